"""The ``swift_server`` fixture keeps its promises: the Swift backend's tests rely on them.

Both faces of the one server are checked the way their clients use them: Swift's native API
through tempauth v1 (token, storage URL, container and object round trip) and the S3 layer
with boto3 on the same data.
"""

from __future__ import annotations

import urllib.request
from typing import Any

import boto3
from botocore.config import Config

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(method: str, url: str, token: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers={"X-Auth-Token": token})
    with _opener.open(req, timeout=10) as r:
        return r.status, r.read()


def test_native_api_and_s3_layer_see_the_same_objects(swift_server: dict[str, Any]) -> None:
    auth = urllib.request.Request(
        swift_server["auth_url"],
        headers={"X-Auth-User": swift_server["user"], "X-Auth-Key": swift_server["key"]},
    )
    with _opener.open(auth, timeout=10) as r:
        token = r.headers["X-Auth-Token"]
        assert r.headers["X-Storage-Url"] == swift_server["storage_url"]
    base = f"{swift_server['storage_url']}/fixture-check"
    assert _call("PUT", base, token)[0] in (201, 202)
    assert _call("PUT", f"{base}/dir/obj", token, b"native bytes")[0] == 201

    s3 = boto3.client(
        "s3", endpoint_url=swift_server["s3_endpoint"], region_name=swift_server["s3_region"],
        aws_access_key_id=swift_server["s3_access_key"],
        aws_secret_access_key=swift_server["s3_secret_key"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    assert s3.get_object(Bucket="fixture-check", Key="dir/obj")["Body"].read() == b"native bytes"
    s3.put_object(Bucket="fixture-check", Key="from-s3", Body=b"s3 bytes")
    assert _call("GET", f"{base}/from-s3", token) == (200, b"s3 bytes")
