"""Helpers shared by the filesystem-core tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from storefs.backends.base import ObjectMeta
from storefs.backends.retrying import RetryingBackend
from storefs.cache.chunks import ChunkCache
from storefs.cache.fetch import Fetcher
from storefs.cache.writeback import WriteBack
from storefs.fs.filesystem import Filesystem, FsOptions
from storefs.fs.posix_meta import Defaults

MiB = 1024 * 1024


async def start_fs(backend: RetryingBackend, tmp_path: Path, nursery: trio.Nursery,
                   options: FsOptions | None = None) -> Filesystem:
    """The filesystem core over ``backend``, its caches under ``tmp_path``, running in
    ``nursery`` (a second one on the same ``tmp_path`` finds the first one's journal)."""
    fetcher = Fetcher(backend, ChunkCache(tmp_path / "chunks", 64 * MiB), MiB, 4)
    wb = WriteBack(backend, fetcher, tmp_path / "dirty", parallel=2)
    fetcher.start(nursery)
    wb.start(nursery)
    filesystem = Filesystem(backend, options or FsOptions(Defaults(0, 0)), fetcher, wb)
    await filesystem.start()
    return filesystem


async def all_uploaded(fs: Filesystem) -> None:
    """Until write-back has nothing pending: woken by every finished upload or conflict
    copy, bounded."""
    wb = fs.writeback
    inner_uploaded, inner_conflict = wb.on_uploaded, wb.on_conflict
    changed = trio.Event()

    def uploaded(df: Any, meta: ObjectMeta) -> None:
        inner_uploaded(df, meta)
        changed.set()

    def conflict(df: Any, key: str) -> None:
        inner_conflict(df, key)
        changed.set()

    wb.on_uploaded, wb.on_conflict = uploaded, conflict
    try:
        with trio.fail_after(20):
            while fs.pending():
                await changed.wait()
                changed = trio.Event()
    finally:
        wb.on_uploaded, wb.on_conflict = inner_uploaded, inner_conflict
