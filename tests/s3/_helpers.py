"""What the S3 tests share: the two real S3 servers seen alike, and a plain boto3 client
that plays "another tool" writing to the same bucket."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.config import Config

from storefs.backends.s3 import S3Backend, open_backend
from storefs.source import parse_source

#: server name -> session fixture
SERVERS = {"moto": "moto_server", "swift": "swift_server"}


@dataclass(frozen=True)
class S3Server:
    name: str
    endpoint: str
    access_key: str
    secret_key: str
    region: str
    #: what conditional_writes is set to for this server: moto implements If-None-Match
    #: and If-Match on PUT; Swift's S3 layer answers 501 NotImplemented
    conditional_writes: str
    #: more options this server needs (Swift: its 256-byte limit on metadata values)
    extra: dict[str, str] = field(default_factory=dict)

    def options(self, **more: str) -> dict[str, str]:
        """``-o`` options that reach this server."""
        return {"endpoint": self.endpoint, "access_key": self.access_key,
                "secret_key": self.secret_key, "region": self.region,
                "conditional_writes": self.conditional_writes, **self.extra, **more}


def s3_server(request: pytest.FixtureRequest, name: str) -> S3Server:
    info: dict[str, Any] = request.getfixturevalue(SERVERS[name])
    if name == "moto":
        return S3Server("moto", info["endpoint"], info["access_key"], info["secret_key"],
                        info["region"], "on")
    return S3Server("swift", info["s3_endpoint"], info["s3_access_key"], info["s3_secret_key"],
                    info["s3_region"], "off", {"max_metadata_value": "256"})


def _add_md5(params: dict[str, Any], **_: Any) -> None:
    body = params.get("body")
    if isinstance(body, bytes):
        params["headers"]["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()


def raw_client(server: S3Server) -> Any:
    """A plain boto3 client, as another tool would use (path style, no retries)."""
    client = boto3.client(
        "s3", endpoint_url=server.endpoint, region_name=server.region,
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1},
                      request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"),
    )
    # Swift's S3 layer refuses DeleteObjects without Content-MD5
    client.meta.events.register("before-call.s3.DeleteObjects", _add_md5)
    return client


_made: set[tuple[str, str]] = set()


def ensure_bucket(server: S3Server, bucket: str) -> None:
    """Create ``bucket`` unless this process already did (other workers may race)."""
    if (server.endpoint, bucket) in _made:
        return
    client = raw_client(server)
    try:
        client.create_bucket(Bucket=bucket)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    except client.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
            raise
    _made.add((server.endpoint, bucket))


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def backend_for(server: S3Server, bucket: str, prefix: str = "", **options: str) -> S3Backend:
    """An S3 backend (not connected) on ``bucket/prefix`` of ``server``."""
    source = parse_source(f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}")
    return open_backend(source, server.options(**options))


@contextlib.asynccontextmanager
async def connected(server: S3Server, bucket: str, prefix: str = "", **options: str
                    ) -> AsyncIterator[S3Backend]:
    """``backend_for(...)``, connected, closed at the end."""
    backend = backend_for(server, bucket, prefix, **options)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.aclose()


def filled_bucket(server: S3Server, name: str, objects: dict[str, bytes]) -> tuple[str, Any]:
    """A new bucket holding ``objects``, written by a plain boto3 client (returned too)."""
    bucket = unique(name)
    ensure_bucket(server, bucket)
    raw = raw_client(server)
    for key, body in objects.items():
        raw.put_object(Bucket=bucket, Key=key, Body=body)
    return bucket, raw
