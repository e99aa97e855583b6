"""The on-disk page cache: keyed by version, private, capped, kept across mounts."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path
from typing import Any

import pytest

from storefs.cache import chunks
from storefs.cache.chunks import ChunkCache


def test_pages_are_per_version_private_and_persistent(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path / "c", capacity=10_000, memory_pages=1)
    cache.put("k", "v1", 0, b"old bytes")
    cache.put("k", "v2", 0, b"new bytes")
    assert cache.get("k", "v1", 0) == b"old bytes"
    assert cache.get("k", "v2", 0) == b"new bytes"
    assert cache.get("k", "v3", 0) is None
    assert stat.S_IMODE(os.stat(tmp_path / "c").st_mode) == 0o700
    files = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    again = ChunkCache(tmp_path / "c", capacity=10_000)
    assert again.get("k", "v2", 0) == b"new bytes"
    assert again.used == len(b"old bytes") + len(b"new bytes")


def test_capacity_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path / "c", capacity=250, memory_pages=0)
    for i in range(3):
        cache.put("k", "e", i, bytes(100))
    assert cache.used <= 250
    assert cache.get("k", "e", 0) is None  # oldest went first
    assert cache.get("k", "e", 2) == bytes(100)
    cache.get("k", "e", 1)
    cache.put("k", "e", 3, bytes(100))
    assert cache.get("k", "e", 1) is not None and cache.get("k", "e", 2) is None
    assert cache.statistics()["evictions"] == 2


def test_a_random_reader_of_a_1_gib_file_opens_each_page_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # fio over 256 MiB reopened three page files in four with 64 descriptors kept: a
    # third of the mount's time went to open(2) and path building.  The usual soft limit
    # of 1,024 descriptors is raised by the mount only after the cache is built.
    monkeypatch.setattr(chunks.resource, "getrlimit", lambda _: (1024, 1 << 16))
    cache = ChunkCache(tmp_path / "c", capacity=1 << 30, memory_pages=0)
    monkeypatch.setattr(chunks.resource, "getrlimit", lambda _: (1 << 16, 1 << 16))
    for index in range(1024):  # 1 GiB in 1 MiB pages, 16 bytes stand for each
        cache.put("big", "e", index, index.to_bytes(16, "big"))
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting_open)
    rng = random.Random(7)
    for _ in range(3):
        for index in rng.sample(range(1024), 1024):
            assert cache.read("big", "e", index, 12, 16) == index.to_bytes(16, "big")[12:]
    assert len(opened) == 1024
    cache.clear()


def test_partial_reads_come_from_the_page_file_and_stop_at_eviction(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path / "c", capacity=250, memory_pages=0)
    page = bytes(range(100))
    cache.put("k", "e", 0, page)
    assert cache.read("k", "e", 0, 10, 14) == page[10:14]  # pread, not the whole page
    assert cache.read("k", "e", 0, 96, 100) == page[96:]
    assert cache.read("k", "other", 0, 0, 4) is None  # another version is never mixed in
    cache.put("k", "e", 1, bytes(100))
    cache.put("k", "e", 2, bytes(100))  # evicts page 0 (and closes its descriptor)
    assert cache.read("k", "e", 0, 10, 14) is None
    assert cache.read("k", "e", 2, 0, 3) == bytes(3)
    cache.clear()
    assert cache.read("k", "e", 2, 0, 3) is None


def test_memory_drops_pages_already_read_before_pages_read_ahead(tmp_path: Path) -> None:
    # a sequential reader's pages just read were moved to the LRU's end by their reads and
    # outranked the pages read ahead for it: its next page was dropped and fetched again
    cache = ChunkCache(tmp_path, capacity=0, memory_pages=4)
    for i in range(4):
        cache.remember("k", "e", i, bytes([i]) * 10, ahead=True)
    assert cache.get("k", "e", 0) and cache.get("k", "e", 1)  # the reader reads two
    cache.remember("k", "e", 4, b"4" * 10, ahead=True)
    cache.remember("k", "e", 5, b"5" * 10, ahead=True)
    assert [cache.has("k", "e", i) for i in range(6)] == [False, False, True, True, True, True]
    # only pages read ahead left: the oldest of them goes
    cache.remember("k", "e", 6, b"6" * 10, ahead=True)
    assert [cache.has("k", "e", i) for i in range(2, 7)] == [False, True, True, True, True]


def test_pages_outlive_their_files_in_memory_when_the_disk_is_too_small(tmp_path: Path) -> None:
    # read-ahead pages wait for their reader in page files: a cache too small for them
    # keeps them in memory instead (a read-ahead window), and evicting a file keeps its copy
    small = ChunkCache(tmp_path / "s", capacity=250, memory_pages=1, diskless_pages=4,
                       disk_floor=1000)
    assert small.memory_pages == 4
    for i in range(4):
        small.put("k", "e", i, bytes([i]) * 100)
    assert small.used <= 250 and small.statistics()["evictions"] >= 2
    assert all(small.has("k", "e", i) for i in range(4))
    assert [small.get("k", "e", i) for i in range(4)] == [bytes([i]) * 100 for i in range(4)]
    roomy = ChunkCache(tmp_path / "r", capacity=10_000, memory_pages=1, diskless_pages=4,
                       disk_floor=1000)
    assert roomy.memory_pages == 1
    roomy.put("k", "e", 0, bytes(600))
    roomy.stored("k-other", -1)  # a full disk: the cache shrinks below the floor
    assert roomy.capacity < 1000 and roomy.memory_pages == 4
