"""Pages a random reader reads through FUSE go to the kernel's page cache whole, and never when
that could put old bytes over new ones (``storefs.fs.kernel_pages``).  The kernel side is
a recorder here; tests/mount/test_kernel_pages.py checks it through a real mount."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from storefs.backends.mem import MemBackend
from storefs.backends.retrying import RetryingBackend
from storefs.fs.filesystem import AttrChanges, Filesystem
from storefs.fs.handles import FileHandle
from storefs.fs.inodes import ROOT_INO
from tests.fs._util import start_fs

MiB = 1024 * 1024
KiB = 1024
_n = itertools.count()


class Kernel:
    """Records what would be stored in the page cache; can hold a store half-way."""

    def __init__(self) -> None:
        self.stored: list[tuple[int, int, bytes]] = []
        self.hold: threading.Event | None = None

    def store(self, ino: int, offset: int, data: bytes) -> None:
        if self.hold is not None:
            self.hold.wait(10)
        self.stored.append((ino, offset, bytes(data)))


@pytest.fixture
async def setup(tmp_path: Path, nursery: trio.Nursery
                ) -> AsyncIterator[tuple[Filesystem, Kernel, int, bytes]]:
    name = f"pages{next(_n)}"
    data = os.urandom(5 * MiB - 1000)
    await MemBackend(name, "").put("f", data, {})
    fs = await start_fs(RetryingBackend(MemBackend(name, "")), tmp_path, nursery)
    kernel = Kernel()
    fs.attach(nursery, kernel.store)
    inode = await fs.lookup(ROOT_INO, "f")
    assert inode is not None
    fs.remember(inode)
    yield fs, kernel, inode.ino, data


@contextlib.asynccontextmanager
async def _opened(fs: Filesystem, ino: int) -> AsyncIterator[FileHandle]:
    h, _ = await fs.open(ino, os.O_RDONLY)
    try:
        yield h
    finally:
        await fs.release(h.fh)


async def _pread(fs: Filesystem, fh: int, offset: int, size: int = 4 * KiB) -> bytes:
    return await fs.read(fh, offset, size)


async def _pushed(fs: Filesystem) -> None:
    """Until the pushes in flight are done."""
    assert fs.kernel_pages is not None
    await trio.testing.wait_all_tasks_blocked()
    for inode in list(fs.inodes):
        await fs.kernel_pages.settle(inode)


async def test_a_random_reader_gets_each_fetched_chunk_in_the_page_cache(
        setup: tuple[Filesystem, Kernel, int, bytes]) -> None:
    fs, kernel, ino, data = setup
    async with _opened(fs, ino) as h:
        assert await _pread(fs, h.fh, MiB + 5000) == data[MiB + 5000:MiB + 5000 + 4 * KiB]
        assert await _pread(fs, h.fh, 4 * MiB + 123) == data[4 * MiB + 123:4 * MiB + 4219]
        await _pushed(fs)
        # the whole chunks, the last one cut at the end of the file
        assert sorted(kernel.stored) == [(ino, MiB, data[MiB:2 * MiB]),
                                         (ino, 4 * MiB, data[4 * MiB:])]
        # a read of chunk 1 that still reaches the daemon means the kernel lost the page
        # (memory pressure, fadvise DONTNEED): the chunk goes in again, from the chunk
        # cache, once however many reads ask while it is on its way
        async with _opened(fs, ino) as other:  # (its own reader: not "sequential")
            kernel.hold = threading.Event()
            assert await _pread(fs, h.fh, MiB + 300_000) == data[MiB + 300_000:MiB + 304_096]
            assert await _pread(fs, other.fh, MiB + 9000) == data[MiB + 9000:MiB + 13_096]
            kernel.hold.set()
        await _pushed(fs)
        assert kernel.stored[2:] == [(ino, MiB, data[MiB:2 * MiB])]
        assert fs.fetcher.fetched_bytes == MiB + len(data) - 4 * MiB  # no new GET


async def test_a_sequential_reader_is_left_to_read_ahead(
        setup: tuple[Filesystem, Kernel, int, bytes]) -> None:
    fs, kernel, ino, data = setup
    async with _opened(fs, ino) as h:
        got = b"".join([await _pread(fs, h.fh, off, 128 * KiB)
                        for off in range(0, len(data), 128 * KiB)])
        assert got == data
        await _pushed(fs)
        assert kernel.stored == []


async def test_nothing_is_pushed_while_a_writer_has_the_file_open(
        setup: tuple[Filesystem, Kernel, int, bytes]) -> None:
    fs, kernel, ino, data = setup
    writer, _ = await fs.open(ino, os.O_WRONLY)
    async with _opened(fs, ino) as reader:
        assert await _pread(fs, reader.fh, MiB + 10) == data[MiB + 10:MiB + 10 + 4 * KiB]
        await _pushed(fs)
        assert kernel.stored == []
        assert fs.kernel_pages is not None and fs.kernel_pages.refused == 1
        await fs.release(writer.fh)


@pytest.mark.parametrize("flags", [os.O_WRONLY, os.O_RDONLY])
async def test_an_open_waits_for_the_pushes_in_flight(
        setup: tuple[Filesystem, Kernel, int, bytes], flags: int) -> None:
    # a writer must not write pages a push then overwrites with the old bytes, and an
    # open that makes the kernel drop its pages must not be followed by a push landing
    fs, kernel, ino, _ = setup
    kernel.hold = threading.Event()
    reader, _ = await fs.open(ino, os.O_RDONLY)
    opened = trio.Event()

    async def open_again() -> None:
        h, _ = await fs.open(ino, flags)
        opened.set()
        await fs.release(h.fh)

    try:
        await _pread(fs, reader.fh, 2 * MiB)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(open_again)
            await trio.testing.wait_all_tasks_blocked()
            assert not opened.is_set() and kernel.stored == []
            kernel.hold.set()
        assert opened.is_set() and [s[1] for s in kernel.stored] == [2 * MiB]
    finally:
        kernel.hold.set()
        await fs.release(reader.fh)


async def test_a_truncate_refuses_later_pushes(
        setup: tuple[Filesystem, Kernel, int, bytes]) -> None:
    fs, kernel, ino, _ = setup
    async with _opened(fs, ino) as reader:
        await fs.setattr(ino, AttrChanges(size=100))
        # the reader keeps its version, but the file has local changes now
        await _pread(fs, reader.fh, MiB + 10)
        await _pushed(fs)
        assert kernel.stored == []
