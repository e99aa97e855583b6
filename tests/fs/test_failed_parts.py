"""Several parts of one upload refused at once (a full store, an expired key, a network
gone for good): write-back sees one error, keeps the file, and ``umount``'s drain names it
instead of failing with an "internal error"."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from storefs.backends.base import Metadata, Upload
from storefs.backends.mem import MemBackend
from storefs.backends.retrying import RetryingBackend, RetryPolicy
from storefs.errors import PermissionDenied
from storefs.fs.filesystem import Filesystem
from storefs.fs.inodes import ROOT_INO
from tests.fs._util import start_fs

MiB = 1024 * 1024
_n = itertools.count()


class RefusedParts(MemBackend):
    """A store that refuses every part of a multipart upload: the first two together (the
    first waits for the second to arrive, then both fail in the same instant), any later
    one at once."""

    def __init__(self, name: str) -> None:
        super().__init__(name, "")
        self.name = name
        self.refusing = True
        self.refused = 0

    async def begin_upload(self, key: str, metadata: Metadata, **kwargs: Any) -> Upload:
        upload = await super().begin_upload(key, metadata, **kwargs)
        store, write_part = self, upload.write_part
        arrived: list[trio.Event] = []

        async def refuse(number: int, data: bytes) -> None:
            if not store.refusing:
                await write_part(number, data)
                return
            mine = trio.Event()
            arrived.append(mine)
            if len(arrived) == 2:
                arrived[0].set()  # the partner waiting for this one
            elif len(arrived) == 1:
                await mine.wait()
            # a later part of the same upload (the last one, sent alone at close) is
            # refused at once: waiting for a partner that never comes hung the test
            store.refused += 1
            raise PermissionDenied(f"mem://{key} part {number}: quota exceeded")

        upload.write_part = refuse  # type: ignore[method-assign]
        return upload


async def _big_file(fs: Filesystem, name: str, data: bytes) -> int:
    h, inode = await fs.create(ROOT_INO, name, 0o644, os.O_WRONLY | os.O_CREAT, 0, 0)
    fs.remember(inode)
    for off in range(0, len(data), MiB):
        await fs.write(h.fh, off, data[off:off + MiB])
    try:
        await fs.flush(h.fh)
    finally:
        await fs.release(h.fh)
    return inode.ino


async def test_parts_refused_together_are_one_error_and_the_file_is_kept(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    store = RefusedParts(f"refused{next(_n)}")
    fs = await start_fs(RetryingBackend(store, RetryPolicy(base=0.001, cap=0.01)),
                        tmp_path, nursery)
    data = os.urandom(24 * MiB)  # three 8 MiB parts
    with pytest.raises(PermissionDenied, match="quota exceeded"):
        await _big_file(fs, "big", data)
    assert store.refused >= 2  # refused together, not one after the other
    assert fs.writeback.failures >= 1

    lines: list[str] = []
    left = await fs.writeback.drain(fs.pending(), trio.current_time() + 30, lines.append)
    assert [df.key for df in left] == ["big"]
    assert any(line.startswith("could not upload big: ") and "quota exceeded" in line
               for line in lines), lines

    # the store takes parts again: the kept file goes up whole
    store.refusing = False
    assert await fs.writeback.drain(fs.pending(), trio.current_time() + 30) == []
    assert MemBackend(store.name, "").store.objects["big"].data == data
