"""Helpers shared by the filesystem-core tests."""

from __future__ import annotations

from typing import Any

import trio

from storefs.backends.base import ObjectMeta
from storefs.fs.filesystem import Filesystem


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
