"""What the fetcher keeps in memory while a read-ahead run is written to the chunk cache."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import trio

from storefs.backends.base import ETag
from storefs.backends.mem import MemBackend
from storefs.cache.chunks import ChunkCache
from storefs.cache.fetch import Fetcher

MiB = 1024 * 1024


class Recording(MemBackend):
    """mem:// that remembers the last buffer a ranged GET returned."""

    last: bytes = b""

    async def get_range(self, key: str, start: int, end: int, *,
                        if_match: ETag | None = None) -> bytes:
        self.last = await super().get_range(key, start, end, if_match=if_match)
        return self.last


async def test_a_run_buffer_is_let_go_before_its_pages_go_to_disk(tmp_path: Path) -> None:
    # each read-ahead run is 8 MiB, cut into pages; up to 8 runs are in flight, so a run
    # whose buffer lived on while its pages were written would double their memory
    backend = Recording(f"fetch-{uuid.uuid4().hex}")
    data = os.urandom(9 * MiB)  # the run is a part of it: a buffer of its own
    meta = await backend.put("big", data, {})
    cache = ChunkCache(tmp_path / "chunks", 64 * MiB)
    fetcher = Fetcher(backend, cache, MiB, 4)
    refs_at_write: list[int] = []
    write_file = cache.write_file

    def watched(name: str, page: bytes) -> int | None:
        refs_at_write.append(sys.getrefcount(backend.last))
        return write_file(name, page)

    cache.write_file = watched  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        fetcher.start(nursery)
        fetcher.prefetch("big", meta.etag, len(data), 0, 8)
    assert len(refs_at_write) == 8
    # the recording attribute and getrefcount's own argument: nothing else holds the run
    assert set(refs_at_write) == {2}
    pages = [await fetcher.page("big", meta.etag, len(data), i) for i in range(9)]
    assert b"".join(pages) == data
