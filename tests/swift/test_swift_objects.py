"""Swift specifics on the real Swift all-in-one: other tools' objects, large objects, metadata.

"Other tools" are python-swiftclient used directly (what ``swift upload`` runs, with its
``SwiftService`` for segmented uploads) and raw manifests for SLOs and DLOs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from storefs.backends.base import ETag
from storefs.backends.swift import SwiftBackend
from storefs.errors import AlreadyExists, NotFound, PreconditionFailed, TooLarge

MiB = 1024 * 1024


async def in_thread(fn: Any, *args: Any, **kw: Any) -> Any:
    return await trio.to_thread.run_sync(lambda: fn(*args, **kw))


def segment_names(sdk: Any, container: str) -> list[str]:
    from swiftclient import client as sc

    try:
        _, listing = sdk.get_container(f"{container}_segments", full_listing=True)
    except sc.ClientException as exc:
        if exc.http_status == 404:
            return []
        raise
    return [o["name"] for o in listing]


async def test_swift_upload_mtime_and_directory_markers(
        swift: SwiftBackend, swift_server: dict[str, Any], container: str,
        tmp_path: Path) -> None:
    from swiftclient.service import SwiftService, SwiftUploadObject

    src = tmp_path / "notes.txt"
    src.write_bytes(b"written by swift upload")
    os.utime(src, (1700000000.25, 1700000000.25))
    (tmp_path / "emptydir").mkdir()
    opts = {"auth": swift_server["auth_url"], "user": swift_server["user"],
            "key": swift_server["key"], "auth_version": "1"}

    def upload() -> None:
        with SwiftService(options=opts) as service:
            items = [SwiftUploadObject(str(src), object_name="docs/notes.txt"),
                     SwiftUploadObject(None, object_name="docs/emptydir",
                                       options={"dir_marker": True})]
            for result in service.upload(container, items, options={"dir_marker": True}):
                assert result["success"], result

    await in_thread(upload)
    head = await swift.head("docs/notes.txt")
    assert head.metadata["mtime"] == "1700000000.250000"  # X-Object-Meta-Mtime, as swift writes it
    assert head.checksums["md5"] == hashlib.md5(b"written by swift upload").hexdigest()
    assert await swift.get_range("docs/notes.txt", 0, 100) == b"written by swift upload"
    # swift upload's marker is "docs/emptydir" (no slash), type application/directory
    page = await swift.list_page("docs/")
    assert [o.key for o in page.objects] == ["docs/notes.txt"]
    assert page.prefixes == ["docs/emptydir/"]
    assert not page.objects[0].metadata_complete  # listings carry no X-Object-Meta-*
    marker = await swift.head("docs/emptydir/")
    assert marker.is_dir
    await swift.remove_dir("docs/emptydir/")
    assert (await swift.list_page("docs/")).prefixes == []


async def test_what_storefs_writes_looks_right_to_swiftclient(swift: SwiftBackend, sdk: Any,
                                                              container: str) -> None:
    await swift.put("a/file", b"data", {"mtime": "1700000000.5", "mode": "33188"})
    await swift.make_dir("a/sub/", {"mode": "16877"})
    headers = await in_thread(sdk.head_object, container, "a/file")
    assert headers["x-object-meta-mtime"] == "1700000000.5"
    assert headers["etag"] == hashlib.md5(b"data").hexdigest()
    marker = await in_thread(sdk.head_object, container, "a/sub/")
    assert marker["content-type"] == "application/directory"
    assert marker["content-length"] == "0"


async def test_metadata_values_round_trip_and_limits(swift: SwiftBackend) -> None:
    odd = {"xattr": "%7B%22user.a%22%3A%22Yg%3D%3D%22%7D", "name": "caf\u00e9 100%"}
    await swift.put("m", b"x", odd)
    assert (await swift.head("m")).metadata == odd
    with pytest.raises(TooLarge, match="256"):
        await swift.put("m", b"x", {"big": "v" * 300})
    with pytest.raises(TooLarge, match="4096"):
        await swift.set_metadata("m", {f"k{i}": "v" * 200 for i in range(30)})
    assert (await swift.head("m")).metadata == odd  # refused before anything was sent
    # WSGI folds "_" into "-" in header names (a documented deviation)
    await swift.set_metadata("m", {"a_b": "1"})
    assert (await swift.head("m")).metadata == {"a-b": "1"}


def put_slo(sdk: Any, container: str, name: str, segments: list[bytes]) -> None:
    sdk.put_container(f"{container}_segments")
    manifest = []
    for i, seg in enumerate(segments):
        path = f"{name}/manual/{i:08d}"
        etag = sdk.put_object(f"{container}_segments", path, seg)
        manifest.append({"path": f"/{container}_segments/{path}", "etag": etag,
                         "size_bytes": len(seg)})
    sdk.put_object(container, name, json.dumps(manifest),
                   query_string="multipart-manifest=put",
                   headers={"X-Object-Meta-Mtime": "1600000000"})


def put_dlo(sdk: Any, container: str, name: str, segment_prefix: str,
            segments: list[bytes]) -> None:
    """A DLO as ``swift upload --use-dlo`` makes it: segments, then a zero-byte manifest."""
    sdk.put_container(f"{container}_segments")
    for i, seg in enumerate(segments):
        sdk.put_object(f"{container}_segments", f"{segment_prefix}{i:08d}", seg)
    sdk.put_object(container, name, b"",
                   headers={"X-Object-Manifest": f"{container}_segments/{segment_prefix}"})


async def test_slo_and_dlo_of_other_tools_read_as_one_file(swift: SwiftBackend, sdk: Any,
                                                           container: str) -> None:
    segs = [os.urandom(MiB), os.urandom(MiB), b"tail"]
    whole = b"".join(segs)
    await in_thread(put_slo, sdk, container, "big/slo.bin", segs)
    await in_thread(put_dlo, sdk, container, "big/dlo.bin", "dlo/", [b"<0>", b"<1>", b"<2>"])
    head = await swift.head("big/slo.bin")
    assert head.size == len(whole) and head.metadata == {"mtime": "1600000000"}
    assert "md5" not in head.checksums  # an SLO's ETag is no MD5 of its bytes
    lo, hi = MiB - 10, 2 * MiB + 2  # across both segment boundaries
    assert await swift.get_range("big/slo.bin", lo, hi) == whole[lo:hi]
    assert await swift.get_range("big/slo.bin", 0, len(whole), if_match=head.etag) == whole
    assert await swift.get_range("big/dlo.bin", 0, 100) == b"<0><1><2>"
    page = await swift.list_page("big/")
    sizes = {o.key: o.size for o in page.objects}
    # the DLO's manifest is 0 bytes in the listing: its real size comes from a HEAD
    assert sizes == {"big/dlo.bin": 9, "big/slo.bin": len(whole)}
    assert {o.key: o.etag for o in page.objects}["big/slo.bin"] == head.etag


async def test_storefs_writes_an_slo_and_cleans_its_segments(swift: SwiftBackend, sdk: Any,
                                                             container: str) -> None:
    part = MiB
    parts = [os.urandom(part), os.urandom(part), b"end"]
    upload = await swift.begin_upload("v/big", {"mtime": "1"}, part_size=part)
    async with trio.open_nursery() as nursery:  # parts in any order, concurrently
        for n in (3, 1, 2):
            nursery.start_soon(upload.write_part, n, parts[n - 1])
    # segments are in the store while the file is being written
    assert len(await in_thread(segment_names, sdk, container)) == 3
    meta = await upload.complete()
    whole = b"".join(parts)
    assert meta.size == len(whole)
    headers = await in_thread(sdk.head_object, container, "v/big")
    assert headers["x-static-large-object"] == "True"
    segs = await in_thread(segment_names, sdk, container)
    assert len(segs) == 3 and all(s.startswith("v/big/slo/") for s in segs)
    assert await swift.get_range("v/big", 0, len(whole)) == whole
    # overwriting it with a small file drops the old segments
    await swift.put("v/big", b"small now", {})
    assert await in_thread(segment_names, sdk, container) == []
    # and deleting an SLO deletes its segments
    upload = await swift.begin_upload("v/big", {}, part_size=part)
    await upload.write_part(1, parts[0])
    await upload.write_part(2, b"x")
    await upload.complete()
    assert len(await in_thread(segment_names, sdk, container)) == 2
    await swift.delete("v/big")
    assert await in_thread(segment_names, sdk, container) == []
    with pytest.raises(NotFound):
        await swift.head("v/big")


async def test_aborted_upload_and_deleted_dlo_leave_no_segments(swift: SwiftBackend, sdk: Any,
                                                                container: str) -> None:
    upload = await swift.begin_upload("gone", {}, part_size=MiB)
    await upload.write_part(1, os.urandom(MiB))
    await upload.write_part(2, b"z")
    await upload.abort()
    assert await in_thread(segment_names, sdk, container) == []
    await in_thread(put_dlo, sdk, container, "dlo", "d/", [b"ab", b"ab"])
    await swift.delete("dlo")
    assert await in_thread(segment_names, sdk, container) == []


async def test_rename_moves_an_slo_manifest_and_copy_shares_nothing(
        swift: SwiftBackend, sdk: Any, container: str) -> None:
    segs = [os.urandom(MiB), b"rest"]
    whole = b"".join(segs)
    await in_thread(put_slo, sdk, container, "orig", segs)
    before = await in_thread(segment_names, sdk, container)
    await swift.rename("orig", "moved")
    with pytest.raises(NotFound):
        await swift.head("orig")
    # the manifest moved; its segments stayed where they were, still in use
    assert await in_thread(segment_names, sdk, container) == before
    assert (await swift.head("moved")).metadata == {"mtime": "1600000000"}
    assert await swift.get_range("moved", 0, len(whole)) == whole
    await swift.copy("moved", "twin")
    await swift.delete("moved")  # takes its segments, not the copy's
    assert await swift.get_range("twin", 0, len(whole)) == whole
    assert (await swift.head("twin")).metadata == {"mtime": "1600000000"}
    await swift.delete("twin")
    assert await in_thread(segment_names, sdk, container) == []


async def test_conditional_writes(swift: SwiftBackend, sdk: Any, container: str) -> None:
    first = await swift.put("c", b"one", {})
    await in_thread(sdk.put_object, container, "c", b"someone else")
    with pytest.raises(PreconditionFailed):
        await swift.put("c", b"ours", {}, if_match=first.etag)
    with pytest.raises(PreconditionFailed):
        await swift.get_range("c", 0, 10, if_match=first.etag)
    with pytest.raises(PreconditionFailed):
        await swift.copy("c", "d", if_match=first.etag)
    with pytest.raises(AlreadyExists):
        await swift.put("c", b"new", {}, if_none_match=True)
    upload = await swift.begin_upload("c", {}, part_size=MiB, if_none_match=True)
    await upload.write_part(1, b"x")
    with pytest.raises(AlreadyExists):
        await upload.complete()
    assert await swift.get_range("c", 0, 100) == b"someone else"
    with pytest.raises(PreconditionFailed):
        await swift.get_range("c", 0, 10, if_match=ETag("0" * 32))


async def test_set_metadata_replaces_all_and_keeps_the_slo(swift: SwiftBackend, sdk: Any,
                                                           container: str) -> None:
    await in_thread(put_slo, sdk, container, "s", [os.urandom(MiB), b"!"])
    after = await swift.set_metadata("s", {"mode": "33188"})
    assert after.metadata == {"mode": "33188"}  # the old Mtime is gone: POST replaces
    assert after.size == MiB + 1
    headers = await in_thread(sdk.head_object, container, "s")
    assert headers["x-static-large-object"] == "True"


async def test_listing_pages_through_pseudo_directories(swift: SwiftBackend, sdk: Any,
                                                        container: str) -> None:
    def fill() -> None:
        for name in ("p/a", "p/b/1", "p/b/2", "p/c/1", "p/d", "p/e/"):
            sdk.put_object(container, name, b"")

    await in_thread(fill)
    seen: list[str] = []
    token = None
    while True:
        page = await swift.list_page("p/", token=token, limit=2)
        seen += [o.key for o in page.objects] + page.prefixes
        token = page.next_token
        if token is None:
            break
    assert sorted(seen) == ["p/a", "p/b/", "p/c/", "p/d", "p/e/"]
    assert len(seen) == len(set(seen))


async def test_swift_service_segmented_upload_reads_back(swift: SwiftBackend,
                                                         swift_server: dict[str, Any],
                                                         container: str) -> None:
    from swiftclient.service import SwiftService, SwiftUploadObject

    data = os.urandom(3 * MiB + 7)
    opts = {"auth": swift_server["auth_url"], "user": swift_server["user"],
            "key": swift_server["key"], "auth_version": "1"}

    def upload() -> None:
        with SwiftService(options=opts) as service:
            for r in service.upload(container, [SwiftUploadObject(io.BytesIO(data),
                                                                  object_name="svc.bin")],
                                    options={"segment_size": MiB, "use_slo": True}):
                assert r["success"], r

    await in_thread(upload)
    assert (await swift.head("svc.bin")).size == len(data)
    assert await swift.get_range("svc.bin", 2 * MiB - 3, 3 * MiB + 7) == data[2 * MiB - 3:]


async def test_a_tree_move_costs_plain_objects_one_copy_and_one_delete(
        swift: SwiftBackend, sdk: Any, container: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory rename copies what a listing found, then deletes it: plain objects go
    with one COPY and one DELETE each; large ones still take their segments along."""
    from swiftclient import client as sc

    for i in range(5):
        await swift.put(f"t/f{i}", f"plain {i}".encode(), {"mode": "33188"})
    segs = [os.urandom(MiB), b"rest"]
    await in_thread(put_slo, sdk, container, "t/slo", segs)
    await in_thread(put_dlo, sdk, container, "t/dlo", "dl/", [b"<0>", b"<1>"])
    listed = [o async for page in swift.list("t/", delimiter="") for o in page.objects]
    calls: list[tuple[str, str]] = []
    for method in ("head_object", "copy_object", "delete_object", "put_object"):
        real = getattr(sc.Connection, method)

        def spy(self: Any, c: str, name: str, *a: Any, _m: str = method, _r: Any = real,
                **kw: Any) -> Any:
            calls.append((_m, name))
            return _r(self, c, name, *a, **kw)

        monkeypatch.setattr(sc.Connection, method, spy)
    for obj in listed:
        await swift.copy_listed(obj, "u/" + obj.key[2:])
    await swift.delete_listed(listed)
    for i in range(5):
        assert sorted(m for m, n in calls if n == f"t/f{i}") == ["copy_object", "delete_object"]
        assert await swift.get_range(f"u/f{i}", 0, 100) == f"plain {i}".encode()
        assert (await swift.head(f"u/f{i}")).metadata == {"mode": "33188"}
    assert await swift.get_range("u/slo", 0, 2 * MiB) == b"".join(segs)
    assert await swift.get_range("u/dlo", 0, 100) == b"<0><1>"
    assert [o async for page in swift.list("t/", delimiter="") for o in page.objects] == []
    # the old SLO's and DLO's segments went with them; the copy's segments stay
    left = await in_thread(segment_names, sdk, container)
    assert left and all(s.startswith("u/slo/") for s in left)


async def test_a_sent_part_is_not_kept_by_the_connection(swift: SwiftBackend) -> None:
    # swiftclient keeps each connection's last response, and with it the request's body:
    # every worker thread would hold its last segment (16 MiB in a mount) while it lives
    part = MiB
    data = os.urandom(part)
    refs = sys.getrefcount(data)
    upload = await swift.begin_upload("kept/big", {}, part_size=part)
    await upload.write_part(1, data)
    assert sys.getrefcount(data) == refs
    await upload.write_part(2, b"tail")
    await upload.complete()
    await swift.put("kept/small", data, {})
    assert sys.getrefcount(data) == refs
    assert await swift.get_range("kept/big", 0, part + 4) == data + b"tail"
