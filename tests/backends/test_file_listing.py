"""file:// listings page through one scan of the directory, and never serve a stale one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storefs.backends.file import FileBackend


async def keys_of(backend: FileBackend, prefix: str) -> list[str]:
    return [o.key async for page in backend.list(prefix) for o in page.objects]


async def test_pages_reuse_one_scan_and_a_new_listing_sees_every_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "d"
    d.mkdir()
    for i in range(25):
        (d / f"f{i:02d}").write_bytes(b"x")
    backend = FileBackend(tmp_path, page_size=10)
    scans = 0
    real_scandir = os.scandir

    def counting(path: str | os.PathLike[str]) -> object:
        nonlocal scans
        scans += 1
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting)
    assert await keys_of(backend, "d/") == [f"d/f{i:02d}" for i in range(25)]
    assert scans == 1  # three pages, one scan (was one per page)
    # made right after, within the same timestamp tick or not: the next listing shows it
    (d / "late").write_bytes(b"x")
    assert "d/late" in await keys_of(backend, "d/")
    # and a change between two pages of one listing makes the next page scan again
    first = await backend.list_page("d/", limit=10)
    (d / "f00").unlink()
    (d / "zz").write_bytes(b"x")
    os.utime(d, ns=(0, 1))  # a directory mtime surely unlike the scan's
    rest = await backend.list_page("d/", token=first.next_token, limit=100)
    assert "d/zz" in [o.key for o in rest.objects]
