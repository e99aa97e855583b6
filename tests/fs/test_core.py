"""The filesystem core driven directly (no kernel), on the flat in-memory store, with the
invariants every test must leave behind checked at the end."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from storefs.backends.base import ListPage, ObjectMeta
from storefs.backends.file import FileBackend
from storefs.backends.mem import MemBackend
from storefs.backends.retrying import RetryingBackend, RetryPolicy
from storefs.errors import NotEmpty, PreconditionFailed, TransientError
from storefs.fs.filesystem import Filesystem, FsOptions
from storefs.fs.inodes import ROOT_INO, Inode
from storefs.fs.posix_meta import Defaults
from tests.fs._util import all_uploaded, start_fs

MiB = 1024 * 1024
_n = iter(range(10**6))


@pytest.fixture
async def fs(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Filesystem]:
    name = f"core{next(_n)}"
    filesystem = await start_fs(RetryingBackend(MemBackend(name, "", page_size=5)),
                                tmp_path, nursery)
    filesystem.store_name = name  # type: ignore[attr-defined]
    yield filesystem
    # invariants: every handle closed, nothing left pending, only referenced inodes kept
    assert not filesystem.handles.files and not filesystem.handles.dirs
    assert filesystem.pending() == []
    for inode in filesystem.inodes:
        assert inode.ino == ROOT_INO or inode.lookups > 0 or inode.opens > 0, inode


def other_client(fs: Filesystem) -> MemBackend:
    """Another process writing to the same store, behind the mount's back."""
    return MemBackend(fs.store_name, "")  # type: ignore[attr-defined]


async def write_file(fs: Filesystem, name: str, data: bytes, *, chunk: int = MiB) -> int:
    h, inode = await fs.create(ROOT_INO, name, 0o644, os.O_WRONLY | os.O_CREAT, 0, 0)
    fs.remember(inode)
    for off in range(0, len(data), chunk):
        await fs.write(h.fh, off, data[off:off + chunk])
    await fs.flush(h.fh)
    await fs.release(h.fh)
    return inode.ino


async def read_file(fs: Filesystem, ino: int) -> bytes:
    h, _ = await fs.open(ino, os.O_RDONLY)
    try:
        return await fs.read(h.fh, 0, 1 << 40)
    finally:
        await fs.release(h.fh)


async def test_a_known_file_is_checked_again_with_one_head(
        fs: Filesystem, autojump_clock: trio.testing.MockClock) -> None:
    # find, rsync and make stat the same files again after attr_timeout: one HEAD each,
    # not HEAD + LIST (getattr already did so; a lookup did not)
    other = other_client(fs)
    for name in "abcdefgh":  # more than a listing page: the mount looks names up one by one
        await other.put(f"d/{name}", b"x", {})
    d = await fs.lookup(ROOT_INO, "d")
    assert d is not None
    fs.remember(d)
    for name in ("a", "b", "c"):
        inode = await fs.lookup(d.ino, name)
        assert inode is not None
        fs.remember(inode)
    await trio.sleep(fs.opts.attr_timeout + 0.5)
    before = dict(other.store.requests)
    for name in ("a", "b", "c"):
        assert await fs.lookup(d.ino, name) is not None
    asked = {k: v - before.get(k, 0) for k, v in other.store.requests.items()
             if v != before.get(k, 0)}
    assert asked == {"head": 3}, asked
    await other.delete("d/b")  # gone: the full check says so
    await trio.sleep(fs.opts.attr_timeout + 0.5)
    assert await fs.lookup(d.ino, "b") is None
    await other.delete("d/c")
    await other.put("d/c/inner", b"y", {})  # a directory now
    await trio.sleep(fs.opts.attr_timeout + 0.5)
    now_dir = await fs.lookup(d.ino, "c")
    assert now_dir is not None and now_dir.attr.is_dir
    fs.remember(now_dir)


async def test_new_big_file_streams_parts_while_written(fs: Filesystem) -> None:
    data = os.urandom(30 * MiB + 17)
    h, inode = await fs.create(ROOT_INO, "big", 0o644, os.O_WRONLY | os.O_CREAT, 0, 0)
    fs.remember(inode)
    for off in range(0, len(data), MiB):
        await fs.write(h.fh, off, data[off:off + MiB])
    await fs.flush(h.fh)
    # parts went up while the file was written, not all at the close
    assert fs.writeback.streamed_parts >= 2
    await fs.release(h.fh)
    store = other_client(fs).store
    # each part went up once: a finished part never made another one be sent again
    part = fs.writeback.caps.part_size
    assert store.requests["write_part"] == -(-len(data) // part)
    stored = store.objects["big"]
    assert stored.data == data
    assert stored.metadata["mode"] == "33188"
    assert await read_file(fs, inode.ino) == data


async def test_edit_in_the_middle_of_an_existing_object(fs: Filesystem) -> None:
    body = os.urandom(12 * MiB)
    ino = await write_file(fs, "f", body)
    h, _ = await fs.open(ino, os.O_RDWR)
    await fs.write(h.fh, 5 * MiB + 3, b"EDIT")
    await fs.flush(h.fh)
    await fs.release(h.fh)
    expected = body[:5 * MiB + 3] + b"EDIT" + body[5 * MiB + 7:]
    assert other_client(fs).store.objects["f"].data == expected


async def test_concurrent_writer_is_detected_and_both_versions_kept(fs: Filesystem) -> None:
    ino = await write_file(fs, "doc", b"ours v1")
    h, _ = await fs.open(ino, os.O_RDWR)
    await other_client(fs).put("doc", b"theirs", {})  # someone else, meanwhile
    await fs.write(h.fh, 0, b"ours v2")
    with pytest.raises(PreconditionFailed, match="changed by another client"):
        await fs.flush(h.fh)
    await fs.release(h.fh)
    objects = other_client(fs).store.objects
    assert objects["doc"].data == b"theirs"  # not silently overwritten
    conflict = [k for k in objects if k.startswith("doc.storefs-conflict-")]
    assert len(conflict) == 1 and objects[conflict[0]].data == b"ours v2"  # nor lost


class LostReplies(MemBackend):
    """A store whose next PUTs land, but whose replies never arrive (a timeout)."""

    def __init__(self, name: str, lost: int) -> None:
        super().__init__(name, "")
        self.lost = lost

    async def put(self, key: str, data: bytes, metadata: Any, **kwargs: Any) -> ObjectMeta:
        meta = await super().put(key, data, metadata, **kwargs)
        if self.lost > 0:
            self.lost -= 1
            raise TransientError(f"{key}: timed out waiting for the reply")
        return meta


@pytest.mark.parametrize("existing", [False, True])
async def test_an_upload_whose_reply_was_lost_is_no_conflict(
        tmp_path: Path, nursery: trio.Nursery, existing: bool) -> None:
    # the retry of the conditional PUT finds its own first attempt at the name: the close
    # succeeds and no conflict copy is made (with different bytes there, it would be one)
    store = LostReplies(f"lost{next(_n)}", 0)
    fs = await start_fs(RetryingBackend(store, RetryPolicy(base=0.001, cap=0.01)),
                        tmp_path, nursery)
    ino = await write_file(fs, "doc", b"version 1")
    if existing:
        h, _ = await fs.open(ino, os.O_RDWR)
        store.lost = 1
        await fs.write(h.fh, 0, b"VERSION 2")
        await fs.flush(h.fh)
        await fs.release(h.fh)
        want = b"VERSION 2"
    else:
        store.lost = 1
        await write_file(fs, "new", b"fresh bytes")
        want = b"fresh bytes"
    name = "doc" if existing else "new"
    assert store.lost == 0  # the reply was lost once
    assert sorted(store.store.objects) == sorted({"doc", name})
    assert store.store.objects[name].data == want
    assert fs.pending() == [] and fs.writeback.conflicts == 0
    assert await read_file(fs, ino if existing else fs.inodes.at(name).ino) == want  # type: ignore[union-attr]


@pytest.mark.parametrize("changed_after", [False, True])
async def test_a_crash_after_a_close_uploaded_leaves_no_conflict(
        tmp_path: Path, nursery: trio.Nursery, changed_after: bool) -> None:
    """kill -9 right after a flush uploaded a file, before its handle was released (or
    after a later write): the next mount finishes what is pending, without a conflict."""
    name = f"crash{next(_n)}"
    first = await start_fs(RetryingBackend(MemBackend(name, "")), tmp_path, nursery)
    h, _ = await first.create(ROOT_INO, "doc", 0o644, os.O_RDWR | os.O_CREAT, 0, 0)
    await first.write(h.fh, 0, b"version 1")
    await first.flush(h.fh)
    want = b"version 1"
    if changed_after:
        await first.write(h.fh, 0, b"VERSION")
        want = b"VERSION 1"
    # the crash: the first mount is gone without a release; the next starts on its cache
    second = await start_fs(RetryingBackend(MemBackend(name, "")), tmp_path, nursery)
    await all_uploaded(second)
    objects = MemBackend(name, "").store.objects
    assert sorted(objects) == ["doc"] and objects["doc"].data == want
    assert second.writeback.conflicts == 0


async def test_fsync_of_a_file_a_close_uploaded_reaches_the_disk_on_file_stores(
        tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    # a close makes a file:// file visible, not durable; a later fsync (through any
    # descriptor, even a new one) must still fsync the store's file
    store = tmp_path / "store"
    store.mkdir()
    fs = await start_fs(RetryingBackend(FileBackend(store)), tmp_path, nursery)
    ino = await write_file(fs, "doc", b"closed, then synced")
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    h, _ = await fs.open(ino, os.O_RDONLY)
    await fs.fsync(h.fh)
    await fs.release(h.fh)
    assert synced == [str(store / "doc")]
    assert (store / "doc").read_bytes() == b"closed, then synced"


class NoChecksums(MemBackend):
    """A store that reports no MD5 of what it holds (S3 multipart uploads, Swift SLOs)."""

    async def put(self, key: str, data: bytes, metadata: Any, **kwargs: Any) -> ObjectMeta:
        return dataclasses.replace(await super().put(key, data, metadata, **kwargs),
                                   checksums={})

    async def head(self, key: str) -> ObjectMeta:
        return dataclasses.replace(await super().head(key), checksums={})


async def test_a_crash_after_a_close_on_a_store_without_md5s_leaves_no_conflict(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    # where the next mount could not recognise the upload in the store, the journal
    # records it at once rather than at the release
    name = f"nomd5{next(_n)}"
    first = await start_fs(RetryingBackend(NoChecksums(name, "")), tmp_path, nursery)
    h, _ = await first.create(ROOT_INO, "doc", 0o644, os.O_RDWR | os.O_CREAT, 0, 0)
    await first.write(h.fh, 0, b"version 1")
    await first.flush(h.fh)
    second = await start_fs(RetryingBackend(NoChecksums(name, "")), tmp_path, nursery)
    await all_uploaded(second)
    objects = MemBackend(name, "").store.objects
    assert sorted(objects) == ["doc"] and objects["doc"].data == b"version 1"


async def test_the_same_bytes_written_elsewhere_are_still_a_conflict(fs: Filesystem) -> None:
    # equal bytes but not this mount's metadata (mode, mtime): another client's version
    ino = await write_file(fs, "doc", b"ours v1")
    h, _ = await fs.open(ino, os.O_RDWR)
    await other_client(fs).put("doc", b"ours v2", {})
    await fs.write(h.fh, 0, b"ours v2")
    with pytest.raises(PreconditionFailed, match="changed by another client"):
        await fs.flush(h.fh)
    await fs.release(h.fh)
    assert [k for k in other_client(fs).store.objects if "storefs-conflict" in k]


async def test_a_directory_listed_as_a_prefix_shows_its_markers_attributes(
        fs: Filesystem) -> None:
    # `ls -l` of a bucket: listings roll a directory's marker into a prefix, which says
    # nothing about its mode or mtime; the entry's attributes are fetched when asked
    other = other_client(fs)
    await other.put("d/", b"", {"mode": str(0o40700), "mtime": "1600000000"},
                    content_type="application/x-directory")
    await other.put("d/f", b"x", {})
    h = await fs.opendir(ROOT_INO)
    entries = {n: i async for n, i, _ in fs.readdir(h.fh, 0)}
    await fs.releasedir(h.fh)
    for inode in entries.values():
        fs.remember(inode)  # as the kernel does with readdirplus entries
    # what readdir hands the kernel is the marker's attributes or marked to be asked for
    # (incomplete: the kernel caches it for no time and asks getattr)
    d = entries["d"]
    assert not d.complete or d.attr.mode == 0o40700
    d = await fs.getattr(d.ino)
    assert (d.attr.mode, d.attr.mtime_ns) == (0o40700, 1600000000 * 10**9)


async def test_a_listing_looks_up_each_subdirectorys_marker_once(
        fs: Filesystem, nursery: trio.Nursery) -> None:
    # `ls -l` of a bucket of folders: one HEAD per directory while the listing is read
    # (not HEAD + LIST + HEAD each, nor one by one as the kernel asks)
    fs.attach(nursery)  # as the mount does: the prefetch runs in the background
    other = other_client(fs)
    for i in range(6):
        await other.put(f"m{i}/", b"", {"mode": str(0o40750)},
                        content_type="application/x-directory")
        await other.put(f"m{i}/f", b"x", {})
        await other.put(f"bare{i}/f", b"x", {})  # no marker
    other.store.requests.clear()
    h = await fs.opendir(ROOT_INO)
    entries = {n: i async for n, i, _ in fs.readdir(h.fh, 0)}
    await fs.releasedir(h.fh)
    for inode in entries.values():
        fs.remember(inode)
    await trio.testing.wait_all_tasks_blocked()
    assert other.store.requests == {"list": 3, "head": 12}  # (pages of 5 entries)
    modes = {n: (await fs.getattr(i.ino)).attr.mode for n, i in entries.items()}
    assert modes == {**{f"m{i}": 0o40750 for i in range(6)},
                     **{f"bare{i}": 0o40755 for i in range(6)}}
    assert other.store.requests == {"list": 3, "head": 12}  # getattr asked nothing more


async def test_rename_of_a_file_never_uploaded_moves_it_locally(fs: Filesystem) -> None:
    h, inode = await fs.create(ROOT_INO, "tmp.swp", 0o600, os.O_WRONLY | os.O_CREAT, 0, 0)
    fs.remember(inode)
    await fs.write(h.fh, 0, b"content")
    await fs.rename(ROOT_INO, "tmp.swp", ROOT_INO, "final", 0)
    await fs.flush(h.fh)
    await fs.release(h.fh)
    objects = other_client(fs).store.objects
    assert set(objects) == {"final"} and objects["final"].data == b"content"
    assert other_client(fs).store.requests.get("copy", 0) == 0


async def test_directories_on_a_flat_store(fs: Filesystem) -> None:
    await other_client(fs).put("d/", b"", {})  # a marker and a prefix made by another tool
    await other_client(fs).put("d/inner/x", b"1", {})
    d = await fs.lookup(ROOT_INO, "d")
    assert d is not None and d.attr.is_dir and not d.implicit
    fs.remember(d)
    inner = await fs.lookup(d.ino, "inner")
    assert inner is not None and inner.attr.is_dir and inner.implicit
    fs.remember(inner)
    with pytest.raises(NotEmpty):
        await fs.rmdir(d.ino, "inner")
    await fs.unlink(inner.ino, "x")
    # the directory stays although its last key is gone: it got a marker
    assert "d/inner/" in other_client(fs).store.objects
    await fs.rmdir(d.ino, "inner")
    assert set(other_client(fs).store.objects) == {"d/"}
    h = await fs.opendir(d.ino)
    assert [n async for n, _, _ in fs.readdir(h.fh, 0)] == []
    await fs.releasedir(h.fh)


async def test_readdir_offsets_stay_valid_across_pages(fs: Filesystem) -> None:
    client = other_client(fs)
    for i in range(23):
        await client.put(f"e{i:02d}", b"", {})
    h = await fs.opendir(ROOT_INO)
    first: list[tuple[str, int]] = []
    async with contextlib.aclosing(fs.readdir(h.fh, 0)) as entries:
        async for name, inode, nxt in entries:
            first.append((name, nxt))
            fs.drop_if_unused(inode)
            if len(first) == 7:
                break
    # the kernel resumes at the offset it was given, after more pages were fetched
    rest = [n async for n, i, _ in fs.readdir(h.fh, first[-1][1])]
    await fs.releasedir(h.fh)
    names = [n for n, _ in first] + rest
    assert sorted(names) == [f"e{i:02d}" for i in range(23)] and len(set(names)) == 23
    for inode in list(fs.inodes):
        fs.drop_if_unused(inode)


async def _names(fs: Filesystem, ino: int) -> list[str]:
    """What ``ls`` lists (the kernel keeps none of the inodes)."""
    h = await fs.opendir(ino)
    entries = [(n, i) async for n, i, _ in fs.readdir(h.fh, 0)]
    await fs.releasedir(h.fh)
    for _, inode in entries:
        fs.drop_if_unused(inode)
    return [n for n, _ in entries]


async def test_an_open_directory_keeps_its_entries_while_a_new_one_sees_changes(
        fs: Filesystem) -> None:
    # a second `ls` is served from the cached listing, which open directories share:
    # a change must reach the next opendir, never an open one's offsets (nor the cache
    # through an open one)
    client = other_client(fs)
    for name in ("a", "b", "c"):
        await client.put(name, b"x", {})
    assert sorted(await _names(fs, ROOT_INO)) == ["a", "b", "c"]
    requests = dict(client.store.requests)
    h = await fs.opendir(ROOT_INO)
    async with contextlib.aclosing(fs.readdir(h.fh, 0)) as entries:
        first, inode, nxt = await entries.__anext__()
        fs.drop_if_unused(inode)
    a = await fs.lookup(ROOT_INO, "a")
    assert a is not None
    fs.remember(a)
    await fs.unlink(ROOT_INO, "a")
    pending, created = await fs.create(ROOT_INO, "new", 0o644, os.O_WRONLY | os.O_CREAT, 0, 0)
    fs.remember(created)
    rest = [(n, i) async for n, i, _ in fs.readdir(h.fh, nxt)]
    await fs.releasedir(h.fh)
    for _, inode in rest:
        fs.drop_if_unused(inode)
    assert sorted([first, *(n for n, _ in rest)]) == ["a", "b", "c"]  # as when opened
    assert sorted(await _names(fs, ROOT_INO)) == ["b", "c", "new"]
    assert sorted(await _names(fs, ROOT_INO)) == ["b", "c", "new"]  # (no duplicate)
    assert client.store.requests.get("list") == requests.get("list")  # from the cache
    await fs.release(pending.fh)
    await all_uploaded(fs)


async def test_a_file_not_uploaded_yet_is_listed_with_a_fresh_listing(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    # with dir_timeout=0 each `ls` lists the store, which does not have the file being
    # written yet: readdir adds it, and only in its own directory
    name = f"core{next(_n)}"
    fs = await start_fs(RetryingBackend(MemBackend(name, "")), tmp_path, nursery,
                        FsOptions(Defaults(0, 0), dir_timeout=0.0))
    await MemBackend(name, "").put("d/old", b"x", {})
    d = await fs.lookup(ROOT_INO, "d")
    assert d is not None
    fs.remember(d)
    h, inode = await fs.create(d.ino, "writing", 0o644, os.O_WRONLY | os.O_CREAT, 0, 0)
    fs.remember(inode)
    await fs.write(h.fh, 0, b"not flushed")
    assert sorted(await _names(fs, d.ino)) == ["old", "writing"]
    assert await _names(fs, ROOT_INO) == ["d"]
    await fs.release(h.fh)
    await all_uploaded(fs)
    assert sorted(await _names(fs, d.ino)) == ["old", "writing"]
    assert not fs.inodes.local_below("")  # uploaded: no longer kept aside


class _BareListings(MemBackend):
    """Listings without user metadata, as S3's ListObjectsV2 gives them."""

    async def list_page(self, prefix: str, **kwargs: Any) -> ListPage:
        page = await super().list_page(prefix, **kwargs)
        bare = [dataclasses.replace(o, metadata={}, metadata_complete=False)
                for o in page.objects]
        return dataclasses.replace(page, objects=bare)


async def test_a_listing_without_metadata_listed_again_keeps_what_a_head_said(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    # `ls -l` twice on S3: the second listing (from the cache) names the same versions
    # without their modes; the attributes the HEADs gave stay, and nothing is asked again
    name = f"core{next(_n)}"
    other = MemBackend(name, "")
    await other.put("d/f", b"data", {"mode": str(0o100600), "uid": "7"})
    fs = await start_fs(RetryingBackend(_BareListings(name, "")), tmp_path, nursery)
    d = await fs.lookup(ROOT_INO, "d")
    assert d is not None
    fs.remember(d)

    async def listed() -> Inode:
        h = await fs.opendir(d.ino)
        entries = [i async for _, i, _ in fs.readdir(h.fh, 0)]
        await fs.releasedir(h.fh)
        assert len(entries) == 1
        fs.remember(entries[0])
        return entries[0]

    f = await fs.getattr((await listed()).ino)  # the HEAD
    assert (f.attr.mode, f.attr.uid, f.complete) == (0o100600, 7, True)
    requests = dict(fs.backend.inner.store.requests)  # type: ignore[attr-defined]
    for _ in range(2):
        again = await listed()
        assert again is f and (f.attr.mode, f.attr.uid, f.complete) == (0o100600, 7, True)
    assert fs.backend.inner.store.requests == requests  # type: ignore[attr-defined]
    # a new version (another client) in a new listing is taken, not the old attributes
    await other.put("d/f", b"longer data", {"mode": str(0o100640)})
    fs.cache.clear()
    new = await fs.getattr((await listed()).ino)
    assert (new.attr.size, new.attr.mode) == (11, 0o100640)


async def test_sequential_reads_fetch_ahead_in_a_growing_window(fs: Filesystem) -> None:
    data = os.urandom(24 * MiB)
    await other_client(fs).put("seq", data, {})
    inode = await fs.lookup(ROOT_INO, "seq")
    assert inode is not None
    fs.remember(inode)
    h, _ = await fs.open(inode.ino, os.O_RDONLY)
    got = bytearray()
    step = 128 * 1024  # what the kernel asks for
    for off in range(0, 4 * MiB, step):
        got += await fs.read(h.fh, off, step)
    assert fs.fetcher.prefetched > 0
    assert h.ahead.window >= 4  # doubled on every sequential request, up to the limit
    for off in range(4 * MiB, len(data), step):
        got += await fs.read(h.fh, off, step)
    await fs.release(h.fh)
    assert bytes(got) == data
    # a seek resets the window: random reads fetch only what they need
    h, _ = await fs.open(inode.ino, os.O_RDONLY)
    before = fs.fetcher.prefetched
    assert await fs.read(h.fh, 17 * MiB + 5, 10) == data[17 * MiB + 5:17 * MiB + 15]
    assert await fs.read(h.fh, 3 * MiB, 10) == data[3 * MiB:3 * MiB + 10]
    assert fs.fetcher.prefetched == before and h.ahead.window == 0
    await fs.release(h.fh)


async def test_a_remote_overwrite_never_mixes_versions_in_an_open_file(fs: Filesystem) -> None:
    old = b"o" * (3 * MiB)
    await other_client(fs).put("v", old, {})
    inode = await fs.lookup(ROOT_INO, "v")
    assert inode is not None
    fs.remember(inode)
    h, _ = await fs.open(inode.ino, os.O_RDONLY)
    assert await fs.read(h.fh, 0, 1000) == old[:1000]
    await other_client(fs).put("v", b"n" * (3 * MiB), {})
    # pages of the old version still in the cache are served; the others cannot be had
    assert await fs.read(h.fh, 1000, 1000) == old[1000:2000]
    with pytest.raises(PreconditionFailed):
        await fs.read(h.fh, 2 * MiB, 1000)
    await fs.release(h.fh)
    # a new open sees the new version
    await fs.getattr(inode.ino)
    fs.inodes.get(inode.ino).checked = 0.0
    h, keep = await fs.open(inode.ino, os.O_RDONLY)
    assert not keep  # the kernel must drop its pages of the old version
    assert await fs.read(h.fh, 2 * MiB, 3) == b"nnn"
    await fs.release(h.fh)


async def test_probing_many_missing_names_lists_the_directory_once(fs: Filesystem) -> None:
    client = other_client(fs)
    for i in range(3):
        await client.put(f"objects/{i:02x}/blob", b"x", {})
    objects = await fs.lookup(ROOT_INO, "objects")
    assert objects is not None
    fs.remember(objects)
    requests = client.store.requests
    before = dict(requests)
    found = 0
    for i in range(256):  # what git prune does in .git/objects
        inode = await fs.lookup(objects.ino, f"{i:02x}")
        if inode is not None:
            found += 1
            fs.remember(inode)
    assert found == 3
    used = {k: requests.get(k, 0) - before.get(k, 0) for k in requests}
    # one listing answers the 253 misses; only the 3 directories found are looked at
    # (their markers may hold attributes), instead of a HEAD and a LIST for every name
    assert used.get("list", 0) + used.get("head", 0) <= 10, used
