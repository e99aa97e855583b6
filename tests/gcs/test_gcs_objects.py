"""GCS specifics on fake-gcs-server: what other tools wrote, generations, resumable uploads.

Objects "written by other tools" are written here with the plain google-cloud-storage SDK,
with the metadata keys gcsfuse and Google's transfer tools put on them.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import google_crc32c
import pytest
import trio

from storefs.backends.base import ETag
from storefs.backends.gcs import RESUMABLE_QUANTUM, GcsBackend
from storefs.errors import AlreadyExists, NotFound, PreconditionFailed, StorefsError
from tests.gcs.conftest import in_thread

KiB = 1024


def crc32c_b64(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


async def test_gcsfuse_written_objects_read_with_their_metadata(
        gcs: GcsBackend, sdk_bucket: Any) -> None:
    def write() -> None:
        f = sdk_bucket.blob("docs/report.txt")
        f.metadata = {"gcsfuse_mtime": "2023-11-14T22:13:20.123456789Z",
                      "goog-reserved-posix-mode": "640", "goog-reserved-posix-uid": "1000",
                      "goog-reserved-posix-gid": "100"}
        f.upload_from_string(b"quarterly numbers", content_type="text/plain")
        link = sdk_bucket.blob("docs/latest")
        link.metadata = {"goog-reserved-file-is-symlink": "true"}
        link.upload_from_string(b"report.txt")
        sdk_bucket.blob("docs/empty-dir/").upload_from_string(b"")

    await in_thread(write)
    head = await gcs.head("docs/report.txt")
    assert head.size == len(b"quarterly numbers")
    assert head.content_type == "text/plain"
    assert head.metadata["gcsfuse_mtime"] == "2023-11-14T22:13:20.123456789Z"
    assert head.metadata["goog-reserved-posix-mode"] == "640"
    assert await gcs.get_range("docs/report.txt", 0, 100) == b"quarterly numbers"
    # listings carry custom metadata: ls -l needs no HEAD per entry
    page = await gcs.list_page("docs/")
    by_key = {o.key: o for o in page.objects}
    assert by_key["docs/latest"].metadata == {"goog-reserved-file-is-symlink": "true"}
    assert by_key["docs/latest"].metadata_complete
    assert by_key["docs/report.txt"].metadata["goog-reserved-posix-uid"] == "1000"
    assert page.prefixes == ["docs/empty-dir/"]
    # the placeholder gcsfuse makes for an empty directory is a directory marker here
    marker = await gcs.head("docs/empty-dir/")
    assert marker.is_dir and marker.size == 0


async def test_what_storefs_writes_looks_right_to_the_sdk(gcs: GcsBackend,
                                                          sdk_bucket: Any) -> None:
    meta = await gcs.put("a/b.bin", b"payload", {"gcsfuse_mtime": "2024-01-02T03:04:05Z"},
                         content_type="application/x-thing")
    await gcs.make_dir("a/c/", {"goog-reserved-posix-mode": "755"})
    blob = await in_thread(sdk_bucket.get_blob, "a/b.bin")
    assert blob.metadata == {"gcsfuse_mtime": "2024-01-02T03:04:05Z"}
    assert blob.content_type == "application/x-thing"
    assert str(blob.generation) == meta.etag
    placeholder = await in_thread(sdk_bucket.get_blob, "a/c/")
    assert placeholder is not None and placeholder.size == 0


async def test_etag_is_the_generation_and_checksums_are_base64(gcs: GcsBackend,
                                                               sdk_bucket: Any) -> None:
    data = os.urandom(5000)
    first = await gcs.put("g", data, {})
    blob = await in_thread(sdk_bucket.get_blob, "g")
    assert first.etag == str(blob.generation)
    assert first.checksums["crc32c"] == crc32c_b64(data)
    head = await gcs.head("g")
    assert head.checksums["crc32c"] == crc32c_b64(data)
    again = await gcs.put("g", data, {})  # the same bytes: still a new version
    assert again.etag != first.etag and int(again.etag) > int(first.etag)
    assert (await gcs.list_page("")).objects[0].etag == again.etag


async def test_generation_precondition_stops_a_concurrent_overwrite(
        gcs: GcsBackend, sdk_bucket: Any) -> None:
    base = await gcs.put("shared.txt", b"v1", {})
    # another writer (gsutil, another mount) replaces the object meanwhile
    await in_thread(lambda: sdk_bucket.blob("shared.txt").upload_from_string(b"theirs"))
    with pytest.raises(PreconditionFailed):
        await gcs.put("shared.txt", b"ours", {}, if_match=base.etag)
    with pytest.raises(PreconditionFailed):
        await gcs.get_range("shared.txt", 0, 10, if_match=base.etag)
    with pytest.raises(PreconditionFailed):
        await gcs.set_metadata("shared.txt", {"k": "v"}, if_match=base.etag)
    with pytest.raises(PreconditionFailed):
        await gcs.copy("shared.txt", "elsewhere", if_match=base.etag)
    assert await gcs.get_range("shared.txt", 0, 10) == b"theirs"
    with pytest.raises(NotFound):
        await gcs.head("elsewhere")


async def test_create_exclusive_lets_exactly_one_writer_win(gcs: GcsBackend) -> None:
    outcomes: list[str] = []

    async def writer(n: int) -> None:
        try:
            await gcs.put("once", f"writer {n}".encode(), {}, if_none_match=True)
            outcomes.append(f"won {n}")
        except AlreadyExists:
            outcomes.append("lost")

    async with trio.open_nursery() as nursery:
        for n in range(4):
            nursery.start_soon(writer, n)
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1 and outcomes.count("lost") == 3
    assert await gcs.get_range("once", 0, 100) == f"writer {winners[0][4:]}".encode()


async def test_resumable_upload_with_parts_that_are_no_multiple_of_256k(
        gcs: GcsBackend) -> None:
    part = 300 * KiB  # GCS wants 256 KiB multiples: the backend re-chunks
    parts = [os.urandom(part) for _ in range(3)] + [os.urandom(1234)]
    upload = await gcs.begin_upload("big.bin", {"gcsfuse_mtime": "2024-01-01T00:00:00Z"},
                                    part_size=part, content_type="application/octet-stream")
    for n, data in enumerate(parts, 1):
        await upload.write_part(n, data)
        # bytes leave as they are written: what waits is below one part plus 256 KiB
        assert len(upload._pending) < part + RESUMABLE_QUANTUM  # type: ignore[attr-defined]
    meta = await upload.complete()
    whole = b"".join(parts)
    assert meta.size == len(whole)
    assert meta.checksums["crc32c"] == crc32c_b64(whole)
    assert await gcs.get_range("big.bin", 0, len(whole)) == whole
    assert (await gcs.head("big.bin")).metadata == {"gcsfuse_mtime": "2024-01-01T00:00:00Z"}


async def test_resumable_upload_parts_must_come_in_order_and_resends_are_harmless(
        gcs: GcsBackend) -> None:
    part = RESUMABLE_QUANTUM
    a, b, c = os.urandom(part), os.urandom(part), b"end"
    upload = await gcs.begin_upload("seq", {}, part_size=part)
    await upload.write_part(1, a)
    with pytest.raises(StorefsError, match="out of order"):
        await upload.write_part(3, c)
    await upload.write_part(2, b)
    await upload.write_part(2, b)  # a retry of a part already taken adds nothing
    await upload.write_part(3, c)
    await upload.complete()
    assert await gcs.get_range("seq", 0, 3 * part) == a + b + c


async def test_resumable_upload_condition_is_checked_at_complete(gcs: GcsBackend,
                                                                 sdk_bucket: Any) -> None:
    base = await gcs.put("doc", b"v1", {})
    part = RESUMABLE_QUANTUM
    upload = await gcs.begin_upload("doc", {}, part_size=part, if_match=base.etag)
    await upload.write_part(1, os.urandom(part))
    await in_thread(lambda: sdk_bucket.blob("doc").upload_from_string(b"someone else"))
    await upload.write_part(2, b"tail")
    with pytest.raises(PreconditionFailed):
        await upload.complete()
    await upload.abort()
    assert await gcs.get_range("doc", 0, 100) == b"someone else"

    exclusive = await gcs.begin_upload("doc", {}, part_size=part, if_none_match=True)
    await exclusive.write_part(1, b"x")
    with pytest.raises(AlreadyExists):
        await exclusive.complete()


async def test_rename_rewrites_and_removes_the_source(gcs: GcsBackend) -> None:
    data = os.urandom(20_000)
    await gcs.put("from", data, {"gcsfuse_mtime": "2024-05-05T05:05:05Z"},
                  content_type="text/csv")
    moved = await gcs.rename("from", "dir/to")
    with pytest.raises(NotFound):
        await gcs.head("from")
    head = await gcs.head("dir/to")
    assert head.etag == moved.etag
    assert head.metadata == {"gcsfuse_mtime": "2024-05-05T05:05:05Z"}
    assert head.content_type == "text/csv"
    assert await gcs.get_range("dir/to", 0, len(data)) == data
    # a copy with new metadata keeps the content type
    await gcs.copy("dir/to", "copy", metadata={"goog-reserved-posix-mode": "600"})
    copied = await gcs.head("copy")
    assert copied.metadata == {"goog-reserved-posix-mode": "600"}
    assert copied.content_type == "text/csv"


async def test_set_metadata_keeps_data_and_content_type(gcs: GcsBackend) -> None:
    await gcs.put("m", b"data", {"a": "1", "b": "2"}, content_type="image/png")
    after = await gcs.set_metadata("m", {"b": "3"})
    assert after.metadata == {"b": "3"}
    head = await gcs.head("m")
    assert head.metadata == {"b": "3"} and head.content_type == "image/png"
    assert await gcs.get_range("m", 0, 10) == b"data"


async def test_prefix_mount_sees_only_its_subtree(gcs_server: dict[str, Any], bucket: str,
                                                 sdk_bucket: Any) -> None:
    from tests.gcs._util import gcs_backend

    def write() -> None:
        for name in ("outside.txt", "proj/inside.txt", "proj/sub/deep.txt", "project-x/no"):
            sdk_bucket.blob(name).upload_from_string(name.encode())

    await in_thread(write)
    backend = gcs_backend(gcs_server, bucket, "proj/")
    await backend.connect()
    page = await backend.list_page("")
    assert [o.key for o in page.objects] == ["inside.txt"]
    assert page.prefixes == ["sub/"]
    assert await backend.get_range("sub/deep.txt", 0, 100) == b"proj/sub/deep.txt"
    with pytest.raises(NotFound):
        await backend.head("outside.txt")
    await backend.aclose()


async def test_stale_etag_that_is_no_generation_never_matches(gcs: GcsBackend) -> None:
    await gcs.put("x", b"1", {})
    with pytest.raises(PreconditionFailed):
        await gcs.put("x", b"2", {}, if_match=ETag("d41d8cd98f00b204e9800998ecf8427e"))
    assert await gcs.get_range("x", 0, 10) == b"1"


async def test_a_tree_move_costs_a_rewrite_and_a_delete_per_object(
        gcs: GcsBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    for i in range(3):
        await gcs.put(f"t/f{i}", f"file {i}".encode(), {"mode": "33261"})
    listed = [o async for page in gcs.list("t/", delimiter="") for o in page.objects]
    sent: list[str] = []
    real = requests.Session.request

    def spy(self: Any, method: str, url: str, *a: Any, **kw: Any) -> Any:
        sent.append(method)
        return real(self, method, url, *a, **kw)

    monkeypatch.setattr(requests.Session, "request", spy)
    for obj in listed:
        await gcs.copy_listed(obj, "u/" + obj.key[2:])
    await gcs.delete_listed(listed)
    monkeypatch.undo()
    # a rewrite and a delete each, no look at a source the listing described (the
    # generation preconditions they carry are not honoured by fake-gcs-server's rewrite
    # and delete, so what they guard is not checked here)
    assert sorted(sent) == ["DELETE"] * 3 + ["POST"] * 3
    assert (await gcs.list_page("t/")).objects == []
    for i in range(3):
        assert (await gcs.head(f"u/f{i}")).metadata["mode"] == "33261"
        assert await gcs.get_range(f"u/f{i}", 0, 10) == f"file {i}".encode()
