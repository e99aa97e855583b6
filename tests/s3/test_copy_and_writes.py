"""S3 writes beyond the conformance suite: server-side part copy (appends and edits of big
files re-send only what changed), the multipart copy that lifts CopyObject's 5 GiB limit
(forced here with small thresholds), write conditions per server, and the write options
(storage class, encryption, requester pays)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from storefs.backends.base import ETag
from storefs.backends.s3 import S3Backend
from storefs.errors import AlreadyExists, ConfigError, PreconditionFailed, TooLarge
from tests.s3._helpers import S3Server, connected, ensure_bucket, raw_client, s3_server, unique

MiB = 1024 * 1024
BUCKET = "copy-checks"


@pytest.fixture(params=["moto", "swift"])
def server(request: pytest.FixtureRequest) -> S3Server:
    s = s3_server(request, request.param)
    ensure_bucket(s, BUCKET)
    return s


def _backend(server: S3Server, **options: str) -> AbstractAsyncContextManager[S3Backend]:
    return connected(server, BUCKET, unique("t"), **options)


@pytest.fixture
async def backend(server: S3Server) -> AsyncIterator[S3Backend]:
    async with _backend(server) as b:
        yield b


async def test_append_by_part_copy_sends_only_the_new_bytes(backend: S3Backend) -> None:
    old = os.urandom(5 * MiB + 100)
    meta = await backend.put("log", old, {"mode": "33188"})
    tail = os.urandom(3000)
    sent_before = backend.statistics()["bytes_written"]
    upload = await backend.begin_upload("log", {"mode": "33188"}, part_size=5 * MiB)
    await upload.copy_part(1, "log", 0, 5 * MiB, if_match=meta.etag)
    await upload.write_part(2, old[5 * MiB:] + tail)
    done = await upload.complete()
    assert done.size == len(old) + len(tail)
    got = await backend.get_range("log", 0, done.size)
    assert hashlib.md5(got).digest() == hashlib.md5(old + tail).digest()
    # the first 5 MiB came from the server's copy: only the last part went over the wire
    assert backend.statistics()["bytes_written"] - sent_before == 100 + len(tail)
    assert (await backend.head("log")).metadata["mode"] == "33188"


async def _multipart_object(backend: S3Backend, key: str, parts: list[bytes]) -> ETag:
    upload = await backend.begin_upload(key, {}, part_size=len(parts[0]))
    for n, data in enumerate(parts, start=1):
        await upload.write_part(n, data)
    return (await upload.complete()).etag


@pytest.mark.parametrize("source_kind", ["single", "multipart"])
async def test_part_copy_from_a_changed_source_fails(request: pytest.FixtureRequest,
                                                     source_kind: str) -> None:
    # Swift's S3 layer honours CopySourceIfMatch (and refuses it wrongly on multipart
    # sources, which the backend works around); moto ignores it (documented)
    server = s3_server(request, "swift")
    ensure_bucket(server, BUCKET)
    async with _backend(server) as backend:
        async def write(key: str) -> tuple[ETag, bytes]:
            data = [os.urandom(5 * MiB), os.urandom(MiB)]
            if source_kind == "single":
                return (await backend.put(key, b"".join(data), {})).etag, b"".join(data)
            return await _multipart_object(backend, key, data), b"".join(data)

        etag, data = await write("src")
        upload = await backend.begin_upload("dst", {}, part_size=5 * MiB)
        await upload.copy_part(1, "src", 0, 5 * MiB, if_match=etag)
        await upload.copy_part(2, "src", 5 * MiB, len(data), if_match=etag)
        await upload.complete()
        assert await backend.get_range("dst", 0, len(data)) == data

        await write("src")  # overwritten by "another writer"
        upload = await backend.begin_upload("dst", {}, part_size=5 * MiB)
        with pytest.raises(PreconditionFailed):
            await upload.copy_part(1, "src", 0, 5 * MiB, if_match=etag)
        with pytest.raises(PreconditionFailed):
            await backend.copy("src", "elsewhere", if_match=etag)
        await upload.abort()


@pytest.mark.parametrize("replace", [False, True])
async def test_copy_above_the_threshold_is_a_multipart_copy(server: S3Server,
                                                            replace: bool) -> None:
    async with _backend(server, copy_multipart_threshold="5MiB", copy_part_size="5MiB") as backend:
        data = os.urandom(12 * MiB + 5)
        await backend.put("big", data, {"mode": "33188", "uid": "7"}, content_type="video/mp4")
        new_meta = {"mode": "33261"} if replace else None
        copied = await backend.copy("big", "moved/big", metadata=new_meta)
        head = await backend.head("moved/big")
        # three UploadPartCopy parts: the ETag of a multipart object says how many
        assert copied.etag == head.etag and head.etag.strip('"').endswith("-3")
        assert head.size == len(data)
        assert head.content_type == "video/mp4"
        assert dict(head.metadata) == (new_meta or {"mode": "33188", "uid": "7"})
        got = await backend.get_range("moved/big", 0, len(data))
        assert hashlib.md5(got).digest() == hashlib.md5(data).digest()
        # chmod of a big file: metadata replaced by a multipart copy onto itself
        await backend.set_metadata("moved/big", {"mode": "33152"})
        after = await backend.head("moved/big")
        assert dict(after.metadata) == {"mode": "33152"} and after.size == len(data)
        assert after.content_type == "video/mp4"
        again = await backend.get_range("moved/big", 12 * MiB - 10, len(data))
        assert again == data[12 * MiB - 10:]


async def test_small_copies_keep_the_content_type(backend: S3Backend) -> None:
    await backend.put("page.html", b"<p>hi</p>", {"mode": "33188"}, content_type="text/html")
    await backend.set_metadata("page.html", {"mode": "33200"})
    head = await backend.head("page.html")
    assert head.content_type == "text/html" and dict(head.metadata) == {"mode": "33200"}
    # a plain (COPY-directive) copy keeps both too
    await backend.copy("page.html", "copy.html")
    head = await backend.head("copy.html")
    assert head.content_type == "text/html" and dict(head.metadata) == {"mode": "33200"}


async def test_copy_guarded_by_a_stale_etag_fails(request: pytest.FixtureRequest) -> None:
    server = s3_server(request, "swift")
    ensure_bucket(server, BUCKET)
    async with _backend(server) as backend:
        old = await backend.put("x", b"one", {})
        await backend.put("x", b"two", {})
        with pytest.raises(PreconditionFailed):
            await backend.copy("x", "y", if_match=old.etag)
        with pytest.raises(PreconditionFailed):
            await backend.set_metadata("x", {"mode": "1"}, if_match=old.etag)


async def test_write_conditions_on_every_server(backend: S3Backend) -> None:
    """O_EXCL and "overwrite only what I read" hold on both servers: atomically where the
    server has conditional writes (moto, AWS), by a HEAD just before the write elsewhere."""
    first = await backend.put("c", b"1", {})
    with pytest.raises(AlreadyExists):
        await backend.put("c", b"2", {}, if_none_match=True)
    with pytest.raises(PreconditionFailed):
        await backend.put("c", b"2", {}, if_match=ETag('"0123456789abcdef0123456789abcdef"'))
    with pytest.raises(PreconditionFailed):
        await backend.put("never-written", b"2", {}, if_match=first.etag)
    await backend.put("c", b"3", {}, if_match=first.etag)
    assert await backend.get_range("c", 0, 10) == b"3"
    # the same for multipart uploads, checked at complete
    upload = await backend.begin_upload("c", {}, part_size=5 * MiB, if_none_match=True)
    await upload.write_part(1, b"late")
    with pytest.raises(AlreadyExists):
        await upload.complete()
    await upload.abort()
    assert await backend.get_range("c", 0, 10) == b"3"


async def test_a_range_past_the_end_still_checks_the_etag(backend: S3Backend) -> None:
    old = await backend.put("short", b"abc", {})
    assert await backend.get_range("short", 3, 10, if_match=old.etag) == b""
    await backend.put("short", b"abcd", {})
    with pytest.raises(PreconditionFailed):
        await backend.get_range("short", 10, 20, if_match=old.etag)


async def test_metadata_above_2_kib_is_refused_before_sending(backend: S3Backend) -> None:
    with pytest.raises(TooLarge, match="user metadata is 2101 bytes; S3 keeps at most 2048"):
        await backend.put("m", b"", {"xattr": "x" * 2096})
    with pytest.raises(ConfigError, match="not ASCII"):
        await backend.put("m", b"", {"name": "ünï"})


async def test_storage_class_and_encryption_options(request: pytest.FixtureRequest) -> None:
    server = s3_server(request, "moto")  # Swift's S3 layer has neither (documented)
    ensure_bucket(server, BUCKET)
    raw = raw_client(server)
    async with _backend(server, storage_class="standard_ia", sse="AES256") as backend:
        await backend.put("small", b"data", {})
        upload = await backend.begin_upload("multi", {}, part_size=5 * MiB)
        await upload.write_part(1, b"parts")
        await upload.complete()
        await backend.copy("small", "copied")
        await backend.copy_listed((await backend.list_page("small")).objects[0], "listed")
        for key in ("small", "multi", "copied", "listed"):
            head: dict[str, Any] = raw.head_object(Bucket=BUCKET, Key=backend.full(key))
            assert head.get("StorageClass") == "STANDARD_IA", key
            assert head.get("ServerSideEncryption") == "AES256", key
        assert (await backend.head("small")).storage_class == "STANDARD_IA"


async def test_requester_pays_goes_with_every_request(request: pytest.FixtureRequest) -> None:
    # neither server bills requesters; what a requester-pays bucket needs is the header
    server = s3_server(request, "moto")
    ensure_bucket(server, BUCKET)
    seen: list[tuple[str, str | None]] = []

    def watch(request: Any, **_: Any) -> None:
        payer = request.headers.get("x-amz-request-payer")
        seen.append((request.method, payer.decode() if isinstance(payer, bytes) else payer))

    async with _backend(server, requester_pays="true") as backend:
        (await backend.client()).meta.events.register("before-send.s3", watch)
        await backend.put("p", b"x", {})
        await backend.get_range("p", 0, 1)
        await backend.head("p")
        await backend.list_page("")
        await backend.copy("p", "q")
        await backend.copy_listed((await backend.list_page("p")).objects[0], "r")
        await backend.delete_many(["p", "q", "r"])
        assert len(seen) == 9  # put, get, head, list, head+copy, list, copy, delete
        assert all(payer == "requester" for _, payer in seen), seen


async def test_swift_metadata_value_limit_fails_fast(request: pytest.FixtureRequest) -> None:
    # Swift's S3 layer answers a value above 256 bytes with 500 InternalError, which the
    # retry layer would retry for its whole deadline; max_metadata_value refuses it at once
    server = s3_server(request, "swift")
    ensure_bucket(server, BUCKET)
    async with _backend(server) as backend:
        await backend.put("ok", b"", {"xattr": "v" * 256})
        assert (await backend.head("ok")).metadata["xattr"] == "v" * 256
        with pytest.raises(TooLarge, match="'xattr' is 257 bytes; this server keeps at most 256"):
            await backend.put("big", b"", {"xattr": "v" * 257})
        with pytest.raises(TooLarge):
            await backend.set_metadata("ok", {"xattr": "v" * 300})


async def test_metadata_changes_keep_the_etag(backend: S3Backend) -> None:
    # documented in docs/backends/s3.md: the ETag is the MD5 of the data, which a copy onto
    # itself does not change; only the metadata does
    first = await backend.put("e", b"same bytes", {"mode": "33188"})
    changed = await backend.set_metadata("e", {"mode": "33261"})
    head = await backend.head("e")
    assert changed.etag == head.etag == first.etag
    assert head.metadata["mode"] == "33261"


async def test_a_tree_move_costs_one_copy_per_object_and_one_bulk_delete(
        backend: S3Backend) -> None:
    for i in range(4):
        await backend.put(f"t/f{i}", f"file {i}".encode(), {"mode": "33261"},
                          content_type="text/x-test")
    listed = [o async for page in backend.list("t/", delimiter="") for o in page.objects]
    sent: list[str] = []

    def watch(request: Any, **_: Any) -> None:
        sent.append(request.method)

    (await backend.client()).meta.events.register("before-send.s3", watch)
    for obj in listed:
        await backend.copy_listed(obj, "u/" + obj.key[2:])
    await backend.delete_listed(listed)
    assert sent == ["PUT"] * 4 + ["POST"]  # CopyObject each, then one DeleteObjects
    assert (await backend.list_page("t/")).objects == []
    for i in range(4):
        head = await backend.head(f"u/f{i}")
        assert (head.metadata["mode"], head.content_type) == ("33261", "text/x-test")
        assert await backend.get_range(f"u/f{i}", 0, 10) == f"file {i}".encode()
