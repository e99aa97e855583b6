"""HeadObject through ``storefs.backends.s3_head`` (the client's signer and HTTP session,
without boto3's per-call pipeline) answers exactly as boto3's ``head_object`` would, on
both real servers, for awkward keys, errors and anonymous access."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from storefs.backends.s3 import S3Backend, open_backend
from storefs.errors import NotFound, PermissionDenied, PreconditionFailed
from storefs.source import parse_source
from tests.s3._helpers import S3Server, connected, ensure_bucket, raw_client, s3_server, unique

BUCKET = "fast-head"
KEYS = ["plain.txt", "with space & plus+.bin", "tilde~/ünïcödé ✓", "pct%41?q=1#frag",
        "empty", "dir/"]


@pytest.fixture(params=["moto", "swift"])
def server(request: pytest.FixtureRequest) -> S3Server:
    s = s3_server(request, request.param)
    ensure_bucket(s, BUCKET)
    return s


def _boto3_calls(backend_client: Any) -> list[str]:
    """Operations that go through boto3's call pipeline from now on."""
    calls: list[str] = []

    def seen(model: Any, **_: Any) -> None:
        calls.append(model.name)

    backend_client.meta.events.register("before-call.s3", seen)
    return calls


async def test_head_answers_as_boto3_does(server: S3Server) -> None:
    prefix = unique("p") + "/"
    raw = raw_client(server)
    for i, key in enumerate(KEYS):
        body = b"" if key in ("empty", "dir/") else f"body {i}".encode() * (i + 1)
        raw.put_object(Bucket=BUCKET, Key=prefix + key, Body=body,
                       ContentType="application/x-directory" if key == "dir/" else "text/x-t",
                       Metadata={"Mtime": "1700000000.25", "mode": "33188", "uid": str(i)})
    async with connected(server, BUCKET, prefix.rstrip("/")) as backend:
        calls = _boto3_calls(await backend.client())
        for key in KEYS:
            got = await backend.head(key)
            want = backend._meta_from_head(
                key, raw.head_object(Bucket=BUCKET, Key=prefix + key))
            assert got == want, key
            assert got.metadata == {"mtime": "1700000000.25", "mode": "33188",
                                    "uid": str(KEYS.index(key))}
        assert calls == []  # none of them went through boto3's pipeline
        assert backend.statistics()["requests"]["head_object"] == len(KEYS)


async def test_errors_are_boto3s(server: S3Server) -> None:
    async with connected(server, BUCKET, unique("e")) as backend:
        with pytest.raises(NotFound, match=r"/missing: no such object \(404\)$"):
            await backend.head("missing")
        first = await backend.put("f", b"one", {})
        await backend.put("f", b"two", {})
        # copy checks its source's version with a conditional HEAD
        with pytest.raises(PreconditionFailed):
            await backend.copy("f", "g", if_match=first.etag)
        assert (await backend.copy("f", "g")).size == 3
        assert backend.statistics()["errors"] == 2


class _Empty:
    def stream(self) -> Iterator[bytes]:
        return iter(())


async def test_a_reply_it_does_not_know_is_asked_of_boto3(server: S3Server) -> None:
    # e.g. a redirect to the bucket's region: boto3 handles those itself
    answered: list[int] = []

    def redirect_once(request: Any, **_: Any) -> AWSResponse | None:
        if answered:
            return None
        answered.append(301)
        return AWSResponse(request.url, 301, {"x-amz-bucket-region": "elsewhere"}, _Empty())

    async with connected(server, BUCKET, unique("r")) as backend:
        await backend.put("f", b"data", {"mode": "33261"})
        client = await backend.client()
        calls = _boto3_calls(client)
        client.meta.events.register("before-send.s3.HeadObject", redirect_once)
        assert (await backend.head("f")).metadata == {"mode": "33261"}
        assert answered == [301] and calls == ["HeadObject"]


async def test_anonymous_heads_are_unsigned(request: pytest.FixtureRequest) -> None:
    server = s3_server(request, "moto")  # Swift's S3 layer has no anonymous access
    bucket = unique("public")
    ensure_bucket(server, bucket)
    raw = raw_client(server)
    raw.put_object(Bucket=bucket, Key="open.txt", Body=b"for all", ACL="public-read",
                   Metadata={"mode": "33188"})
    raw.put_object(Bucket=bucket, Key="closed.txt", Body=b"owner only")
    backend: S3Backend = open_backend(parse_source(f"s3://{bucket}"),
                                      {"endpoint": server.endpoint, "anonymous": ""})
    await backend.connect()
    try:
        signed: list[bool] = []
        (await backend.client()).meta.events.register(
            "before-send.s3.HeadObject",
            lambda request, **_: signed.append("Authorization" in request.headers))
        assert (await backend.head("open.txt")).metadata == {"mode": "33188"}
        with pytest.raises(PermissionDenied, match=r"closed.txt: access denied \(403\)$"):
            await backend.head("closed.txt")
        assert signed == [False, False]
    finally:
        await backend.aclose()
