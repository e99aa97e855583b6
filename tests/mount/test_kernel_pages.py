"""Through a real kernel mount: after one 4 KiB read fetched a chunk for a random reader,
the rest of that chunk is read from the kernel's page cache (no FUSE request reaches the
daemon), with the right bytes; and a write that follows is read back, never the pushed
old bytes (``storefs.fs.kernel_pages``)."""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mount.conftest import Mounted, make_mounted

MiB = 1024 * 1024
BLOCK = 4096


@pytest.fixture(params=["mem", "s3-moto"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mounted]:
    yield from make_mounted(request, tmp_path, request.param)


def _counters(m: Mounted) -> tuple[int, int]:
    """(chunk cache hits + misses, pages pushed to the kernel)."""
    status: dict[str, Any] = m.status()
    cache, fs = status["cache"], status["filesystem"]
    return cache["hits"] + cache["misses"], fs["kernel_pages"]["pushed"]


def _cold_copy(m: Mounted, name: str, data: bytes) -> Path:
    """``data`` at ``name`` in the store, absent from the kernel's page cache."""
    path = m.path / name
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return path


@contextlib.contextmanager
def _random_reader(path: Path) -> Iterator[int]:
    """A descriptor of ``path`` the kernel reads no more than asked for."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        yield fd
    finally:
        os.close(fd)


def test_a_random_reader_reads_the_rest_of_a_chunk_from_the_page_cache(
        remote: Mounted) -> None:
    m = remote
    data = random.randbytes(6 * MiB)
    path = _cold_copy(m, "big.bin", data)
    with _random_reader(path) as fd:
        first = 3 * MiB + 5 * BLOCK
        assert os.pread(fd, BLOCK, first) == data[first:first + BLOCK]
        asked, pushed = _pushes(m, 1)
        assert pushed == 1, m.status()["filesystem"]
        blocks = list(range(3 * MiB, 4 * MiB, BLOCK))
        random.shuffle(blocks)
        for off in blocks:
            assert os.pread(fd, BLOCK, off) == data[off:off + BLOCK], off
        assert _counters(m) == (asked, 1)  # not one of them reached the daemon


def _pushes(m: Mounted, at_least: int) -> tuple[int, int]:
    """The counters, once at least ``at_least`` pushes are done (they run beside reads)."""
    deadline = time.monotonic() + 30
    asked, pushed = _counters(m)
    while pushed < at_least and time.monotonic() < deadline:
        asked, pushed = _counters(m)
    return asked, pushed


def test_pages_the_kernel_dropped_go_in_again_from_the_chunk_cache(remote: Mounted) -> None:
    # fio --invalidate, fadvise DONTNEED, memory pressure: the next read that reaches the
    # daemon refills the whole chunk, without a request to the store
    m = remote
    data = random.randbytes(4 * MiB)
    path = _cold_copy(m, "again.bin", data)
    with _random_reader(path) as first, _random_reader(path) as fd:
        assert os.pread(first, BLOCK, 2 * MiB + 40 * BLOCK) == data[2 * MiB + 40 * BLOCK:][:BLOCK]
        _pushes(m, 1)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        fetched = m.status()["reads"]["fetched_bytes"]
        # (another descriptor: two reads of one chunk by one reader look sequential)
        assert os.pread(fd, BLOCK, 2 * MiB + 7 * BLOCK) == data[2 * MiB + 7 * BLOCK:][:BLOCK]
        asked, pushed = _pushes(m, 2)
        assert pushed == 2
        for off in range(2 * MiB, 3 * MiB, 16 * BLOCK):
            assert os.pread(fd, BLOCK, off) == data[off:off + BLOCK]
        assert _counters(m) == (asked, 2)
        assert m.status()["reads"]["fetched_bytes"] == fetched


def test_a_write_after_pushed_pages_is_read_back(remote: Mounted) -> None:
    m = remote
    data = random.randbytes(3 * MiB)
    path = _cold_copy(m, "edit.bin", data)
    with _random_reader(path) as fd:
        assert os.pread(fd, BLOCK, 2 * MiB + 100) == data[2 * MiB + 100:2 * MiB + 100 + BLOCK]
        with open(path, "r+b") as w:
            w.seek(2 * MiB + 8192)
            w.write(b"NEW BYTES")
        assert os.pread(fd, 9, 2 * MiB + 8192) == b"NEW BYTES"
    expect = bytearray(data)
    expect[2 * MiB + 8192:2 * MiB + 8201] = b"NEW BYTES"
    assert path.read_bytes() == bytes(expect)


@pytest.fixture
def mem_mount(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mounted]:
    yield from make_mounted(request, tmp_path, "mem")


@pytest.mark.mount_options(kernel_pages="false")
def test_kernel_pages_can_be_turned_off(mem_mount: Mounted) -> None:
    m = mem_mount
    data = random.randbytes(3 * MiB)
    path = _cold_copy(m, "off.bin", data)
    with _random_reader(path) as fd:
        for off in (2 * MiB + 100, 2 * MiB + 8192):
            assert os.pread(fd, BLOCK, off) == data[off:off + BLOCK]
    status: dict[str, Any] = m.status()
    assert status["filesystem"]["kernel_pages"] == {}
    assert status["cache"]["hits"] >= 1  # the second read came through FUSE


@pytest.mark.parametrize("cache_size", ["0", "4M"])
def test_a_cache_smaller_than_the_read_ahead_fetches_each_byte_once(
        request: pytest.FixtureRequest, tmp_path: Path, cache_size: str) -> None:
    # pages read ahead wait for their reader in page files; with no room on disk for them
    # they waited nowhere and were fetched again one by one (278 GETs for 256 MiB on S3
    # instead of 37, at a third of the speed)
    request.node.add_marker(pytest.mark.mount_options(cache_size=cache_size))
    for m in make_mounted(request, tmp_path, "mem"):
        data = random.randbytes(48 * MiB)
        path = _cold_copy(m, "seq.bin", data)
        before = m.status()["reads"]["fetched_bytes"]
        assert path.read_bytes() == data
        assert m.status()["reads"]["fetched_bytes"] - before == len(data)
