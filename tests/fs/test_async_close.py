"""``-o sync_close=false``: close returns at once and released files go up in the
background, ``write_parallel`` at once; fsync still waits for the store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from storefs.backends.base import ObjectMeta
from storefs.backends.mem import MemBackend
from storefs.backends.retrying import RetryingBackend
from storefs.cache.chunks import ChunkCache
from storefs.cache.fetch import Fetcher
from storefs.cache.writeback import WriteBack
from storefs.fs.filesystem import AttrChanges, Filesystem, FsOptions
from storefs.fs.inodes import ROOT_INO
from storefs.fs.posix_meta import Defaults
from tests.fs._util import all_uploaded

MiB = 1024 * 1024
PARALLEL = 3
_n = iter(range(10**6))


class SlowStore(MemBackend):
    """A store whose PUTs take a while, counting how many are in flight at once."""

    def __init__(self, name: str) -> None:
        super().__init__(name, "")
        self.inflight = 0
        self.most = 0
        #: set whenever no PUT is in flight
        self.quiet = trio.Event()

    async def put(self, key: str, data: bytes, metadata: Any, **kwargs: Any) -> ObjectMeta:
        self.inflight += 1
        self.most = max(self.most, self.inflight)
        self.quiet = trio.Event()
        try:
            await trio.sleep(0.05)
            return await super().put(key, data, metadata, **kwargs)
        finally:
            self.inflight -= 1
            if not self.inflight:
                self.quiet.set()


@pytest.fixture
async def store_and_fs(tmp_path: Path,
                       nursery: trio.Nursery) -> AsyncIterator[tuple[SlowStore, Filesystem]]:
    store = SlowStore(f"async{next(_n)}")
    backend = RetryingBackend(store)
    fetcher = Fetcher(backend, ChunkCache(tmp_path / "chunks", 64 * MiB), MiB, 4)
    wb = WriteBack(backend, fetcher, tmp_path / "dirty", parallel=PARALLEL)
    fetcher.start(nursery)
    wb.start(nursery)
    fs = Filesystem(backend, FsOptions(Defaults(0, 0), sync_close=False), fetcher, wb)
    await fs.start()
    yield store, fs
    assert not fs.handles.files


async def write_and_close(fs: Filesystem, name: str, data: bytes) -> int:
    h, inode = await fs.create(ROOT_INO, name, 0o644, os.O_WRONLY | os.O_CREAT, 0, 0)
    fs.remember(inode)
    await fs.write(h.fh, 0, data)
    await fs.flush(h.fh)
    await fs.release(h.fh)
    return inode.ino


async def test_close_returns_before_the_store_has_the_file(
        store_and_fs: tuple[SlowStore, Filesystem]) -> None:
    store, fs = store_and_fs
    names = [f"small{i}" for i in range(10)]
    for i, name in enumerate(names):
        await write_and_close(fs, name, b"x" * (i + 1))
        # close did not wait for the PUT (it takes 50 ms and nothing has run since)
        assert name not in store.store.objects
    # this mount sees every file at once, with its bytes
    found = await fs.lookup(ROOT_INO, "small9")
    assert found is not None
    h, _ = await fs.open(found.ino, os.O_RDONLY)
    assert await fs.read(h.fh, 0, 100) == b"x" * 10
    await fs.release(h.fh)
    await all_uploaded(fs)
    assert {n: store.store.objects[n].data for n in names} == \
        {n: b"x" * (i + 1) for i, n in enumerate(names)}
    # the background kept write_parallel uploads in flight, never more
    assert store.most == PARALLEL


async def test_fsync_still_waits_for_the_store(
        store_and_fs: tuple[SlowStore, Filesystem]) -> None:
    store, fs = store_and_fs
    h, inode = await fs.create(ROOT_INO, "durable", 0o644, os.O_WRONLY | os.O_CREAT, 0, 0)
    fs.remember(inode)
    await fs.write(h.fh, 0, b"kept")
    await fs.fsync(h.fh)
    assert store.store.objects["durable"].data == b"kept"
    await fs.flush(h.fh)
    await fs.release(h.fh)


async def test_rm_while_the_background_upload_runs_leaves_nothing_in_the_store(
        store_and_fs: tuple[SlowStore, Filesystem]) -> None:
    store, fs = store_and_fs
    await write_and_close(fs, "gone", b"short-lived")
    await trio.sleep(0.01)  # the background PUT (50 ms) is in flight now
    assert store.inflight == 1
    await fs.unlink(ROOT_INO, "gone")  # waits for that PUT, then deletes what it made
    await all_uploaded(fs)
    with trio.fail_after(10):
        await store.quiet.wait()  # no PUT left that could still land
    assert "gone" not in store.store.objects
    assert await fs.lookup(ROOT_INO, "gone") is None


async def test_chmod_while_the_background_upload_runs_goes_up_too(
        store_and_fs: tuple[SlowStore, Filesystem]) -> None:
    store, fs = store_and_fs
    ino = await write_and_close(fs, "tarred", b"member")
    await trio.sleep(0.01)  # the background PUT (50 ms) is in flight now
    assert store.inflight == 1
    # what tar and rsync do after closing a file
    await fs.setattr(ino, AttrChanges(mode=0o600, mtime_ns=1_000_000_000))
    await all_uploaded(fs)
    stored = store.store.objects["tarred"]
    assert stored.data == b"member"
    assert int(stored.metadata["mode"]) & 0o777 == 0o600
