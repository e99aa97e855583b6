"""A bucket written by other tools reads right through the S3 backend.

Another client (plain boto3, as s3fs, rclone or the AWS CLI would) fills a bucket: files
with and without ``dir/`` markers above them, s3fs-style metadata (``mode``/``uid``/
``gid``/``mtime``), rclone-style (``mtime`` as a float string), an empty directory kept by
its marker.  A mount must show every directory, file size and attribute from it.
"""

from __future__ import annotations

from typing import Any

import pytest

from storefs.backends.base import Backend
from tests.s3._helpers import connected, filled_bucket, s3_server

pytestmark = pytest.mark.parametrize("server_name", ["moto", "swift"])

S3FS_META = {"mode": "33188", "uid": "1000", "gid": "1000", "mtime": "1600000000"}
RCLONE_META = {"mtime": "1700000000.123456789", "md5chksum": "XrY7u+Ae7tCTyyK7j1rNww=="}

#: key -> (body, metadata, content type); "docs/" and "empty/" are markers
FOREIGN: dict[str, tuple[bytes, dict[str, str], str | None]] = {
    "top.txt": (b"top level", S3FS_META, "text/plain"),
    "docs/": (b"", {"mode": "16877", "uid": "0", "gid": "0"}, "application/x-directory"),
    "docs/readme.md": (b"# readme\n", S3FS_META, None),
    "docs/deep/er/file.bin": (b"\x00" * 2048, RCLONE_META, None),
    "implicit/a": (b"no marker above me", {}, None),
    "implicit/b": (b"nor me", RCLONE_META, None),
    "empty/": (b"", {"mode": "16872"}, "application/x-directory"),
}


async def _listing(backend: Backend, prefix: str) -> tuple[dict[str, Any], list[str]]:
    objects: dict[str, Any] = {}
    prefixes: list[str] = []
    async for page in backend.list(prefix):
        objects.update({o.key: o for o in page.objects})
        prefixes += page.prefixes
    return objects, prefixes


async def test_tree_sizes_and_attributes_of_a_foreign_bucket(
    request: pytest.FixtureRequest, server_name: str
) -> None:
    server = s3_server(request, server_name)
    bucket, raw = filled_bucket(server, "foreign", {})
    for key, (body, meta, ctype) in FOREIGN.items():
        extra = {"ContentType": ctype} if ctype else {}
        raw.put_object(Bucket=bucket, Key=key, Body=body, Metadata=meta, **extra)
    etags = {k: raw.head_object(Bucket=bucket, Key=k)["ETag"] for k in FOREIGN}

    async with connected(server, bucket) as backend:
        # the root: one file, and every directory, marked or implicit, as a prefix
        objects, prefixes = await _listing(backend, "")
        assert sorted(objects) == ["top.txt"]
        assert prefixes == ["docs/", "empty/", "implicit/"]
        top = objects["top.txt"]
        assert (top.size, top.etag) == (len(b"top level"), etags["top.txt"])
        # listings carry no user metadata: the core must HEAD before trusting attributes
        assert not top.metadata_complete

        objects, prefixes = await _listing(backend, "docs/")
        assert sorted(objects) == ["docs/", "docs/readme.md"]  # the marker, then the file
        assert objects["docs/"].is_dir and objects["docs/"].size == 0
        assert prefixes == ["docs/deep/"]
        objects, prefixes = await _listing(backend, "implicit/")
        assert sorted(objects) == ["implicit/a", "implicit/b"] and prefixes == []
        assert objects["implicit/a"].size == len(b"no marker above me")
        objects, prefixes = await _listing(backend, "empty/")
        assert list(objects) == ["empty/"] and prefixes == []

        # HEAD gives the attributes other tools wrote, under their own names
        marker = await backend.head("docs/")
        assert marker.is_dir and marker.metadata["mode"] == "16877"
        assert marker.content_type == "application/x-directory"
        readme = await backend.head("docs/readme.md")
        assert dict(readme.metadata) == S3FS_META
        deep = await backend.head("docs/deep/er/file.bin")
        assert deep.metadata["mtime"] == "1700000000.123456789"
        assert deep.metadata["md5chksum"] == RCLONE_META["md5chksum"]
        assert deep.size == 2048 and deep.checksums["md5"] == etags[
            "docs/deep/er/file.bin"].strip('"')
        assert await backend.get_range("implicit/b", 0, 100) == b"nor me"


async def test_a_mount_of_a_prefix_sees_only_below_it(
    request: pytest.FixtureRequest, server_name: str
) -> None:
    server = s3_server(request, server_name)
    keys = ("outside", "project/", "project/src/main.c", "project/README", "projectile")
    bucket, raw = filled_bucket(server, "prefix", {k: k.encode() for k in keys})
    async with connected(server, bucket, "project") as backend:
        objects, prefixes = await _listing(backend, "")
        # the mount root's own marker comes back as "" and is skipped by callers
        assert sorted(k for k in objects if k) == ["README"]
        assert prefixes == ["src/"]
        assert await backend.get_range("src/main.c", 0, 100) == b"project/src/main.c"
        await backend.put("new", b"written through the mount", {})
        body = raw.get_object(Bucket=bucket, Key="project/new")["Body"].read()
        assert body == b"written through the mount"
