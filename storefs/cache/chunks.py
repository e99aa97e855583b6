"""The chunk cache: fixed-size pages of remote objects on local disk.

A page is identified by ``(key, etag, index)``: bytes ``[index*size, (index+1)*size)`` of one
*version* of an object.  Because the etag is part of the name, a changed object can never
be served from pages of its old version, and nothing needs invalidating: old pages simply
age out of the LRU.

Pages live under ``<root>/<2 hex>/<sha256(key, etag)>.<index>`` (directory 0700, files
0600, written to a temporary name and renamed so a crash never leaves a torn page).  The
index of pages is kept in memory, least recently used first, and rebuilt from the
directory at start-up (oldest access first), so the cache survives remounts.  The total
size is capped; a full disk makes the cache shrink instead of failing reads.

A small in-memory LRU keeps the last few pages, since the kernel reads a page in several
128 KiB requests.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import logging
import os
import resource
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_TMP = ".tmp-"
#: page files kept open for partial reads (a random reader of a 1 GiB file touches 1,024
#: pages; reopening one per 4 KiB read cost a third of the mount's time in fio)
_OPEN_PAGES = 1024


@functools.lru_cache(maxsize=4096)
def version_id(key: str, etag: str) -> str:
    return hashlib.sha256(f"{key}\0{etag}".encode("utf-8", "surrogateescape")).hexdigest()[:40]


class ChunkCache:
    """Size-capped LRU of pages on disk (see the module docstring)."""

    def __init__(self, root: Path, capacity: int, memory_pages: int = 16, *,
                 diskless_pages: int = 0, disk_floor: int = 0) -> None:
        """``memory_pages`` pages stay in memory while the disk holds at least
        ``disk_floor`` bytes, ``diskless_pages`` (if more) when it holds less: pages read
        ahead wait for their reader in page files, and a cache too small for them (or
        turned off, or shrunk by a full disk) would drop them before they are read,
        and every one would be fetched again."""
        self.root = root
        self.capacity = capacity
        self._memory_pages = memory_pages
        self.diskless_pages = diskless_pages
        self.disk_floor = disk_floor
        self._pages: OrderedDict[str, int] = OrderedDict()  # file name -> size, LRU first
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        #: pages in memory read ahead and not read yet: evicted only when memory holds
        #: nothing else (a page just read is the least likely to be wanted again, and the
        #: next one the reader wants is always among these)
        self._unread: set[str] = set()
        #: open descriptors of page files recently read in part (random readers)
        self._fds: OrderedDict[str, int] = OrderedDict()
        #: how many of them to keep: a quarter of the descriptor limit at most, read at
        #: the first partial read (the mount raises the limit after building the cache)
        self._open_pages = 0
        self.used = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.write_errors = 0
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self._load()

    def _load(self) -> None:
        found: list[tuple[float, str, int]] = []
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if f.name.startswith(_TMP):
                    f.unlink(missing_ok=True)
                    continue
                st = f.stat()
                found.append((max(st.st_atime, st.st_mtime), f.name, st.st_size))
        for _, name, size in sorted(found):
            self._pages[name] = size
            self.used += size
        self._evict()

    @property
    def memory_pages(self) -> int:
        """Pages kept in memory now (see ``__init__``)."""
        if self.capacity < self.disk_floor:
            return max(self._memory_pages, self.diskless_pages)
        return self._memory_pages

    def _path(self, name: str) -> Path:
        return self.root / name[:2] / name

    @staticmethod
    def name(key: str, etag: str, index: int) -> str:
        return f"{version_id(key, etag)}.{index}"

    def _from_memory(self, name: str) -> bytes | None:
        """The page if memory holds it (a hit: both LRUs move it to their end)."""
        data = self._memory.get(name)
        if data is not None:
            self._memory.move_to_end(name)
            self._unread.discard(name)
            if name in self._pages:
                self._pages.move_to_end(name)
            self.hits += 1
        return data

    def get(self, key: str, etag: str, index: int) -> bytes | None:
        name = self.name(key, etag, index)
        data = self._from_memory(name)
        if data is not None:
            return data
        if name not in self._pages:
            self.misses += 1
            return None
        try:
            with open(self._path(name), "rb") as f:
                data = f.read()
        except OSError:
            self._forget(name)
            self.misses += 1
            return None
        self._pages.move_to_end(name)
        self._remember(name, data)
        self.hits += 1
        return data

    def read(self, key: str, etag: str, index: int, lo: int, hi: int) -> bytes | None:
        """Bytes ``[lo, hi)`` of a page, or None if it is not cached.

        A random reader wants 4 KiB of a 1 MiB page: it is read from the page file with
        ``pread`` through a kept descriptor, not loaded whole (and not promoted to memory,
        which holds the sequential readers' window)."""
        name = self.name(key, etag, index)
        data = self._from_memory(name)
        if data is not None:
            return data[lo:hi]
        if name not in self._pages:
            return None
        fd = self._fds.get(name)
        try:
            if fd is None:
                if not self._open_pages:
                    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                    self._open_pages = max(16, min(_OPEN_PAGES, soft // 4))
                fd = os.open(self._path(name), os.O_RDONLY | os.O_CLOEXEC)
                self._fds[name] = fd
                while len(self._fds) > self._open_pages:
                    os.close(self._fds.popitem(last=False)[1])
            else:
                self._fds.move_to_end(name)
            part = os.pread(fd, hi - lo, lo)
        except OSError:
            self._forget(name)
            return None
        self._pages.move_to_end(name)
        self.hits += 1
        return part

    def loader(self, key: str, etag: str, index: int) -> Callable[[], bytes | None] | None:
        """A function that returns the whole page, safe to call in a worker thread (None
        from it if the page file went away meanwhile), or None if the page is not cached.
        Counts as no hit: it serves ``storefs.fs.kernel_pages``, not a read."""
        name = self.name(key, etag, index)
        data = self._memory.get(name)
        if data is not None:
            return lambda: data
        if name not in self._pages:
            return None
        path = self._path(name)

        def load() -> bytes | None:
            try:
                return path.read_bytes()
            except OSError:
                return None

        return load

    def has(self, key: str, etag: str, index: int) -> bool:
        name = self.name(key, etag, index)
        return name in self._pages or name in self._memory

    def put(self, key: str, etag: str, index: int, data: bytes) -> None:
        """Keep a page (memory now, disk too); the disk write happens on this thread."""
        name = self.name(key, etag, index)
        self._remember(name, data)
        if self.wants(name):
            self.stored(name, self.write_file(name, data))

    def remember(self, key: str, etag: str, index: int, data: bytes, *,
                 ahead: bool = False) -> str:
        """Keep a page in memory (``ahead``: read ahead, not read yet); returns its name
        for ``write_file``/``stored``."""
        name = self.name(key, etag, index)
        self._remember(name, data, ahead=ahead)
        return name

    def wants(self, name: str) -> bool:
        return name not in self._pages and self.capacity > 0

    def write_file(self, name: str, data: bytes) -> int | None:
        """Write a page file (safe in a worker thread: touches no shared state); returns
        its size, or None when it could not be written (a full disk: see ``stored``)."""
        path = self._path(name)
        tmp = path.with_name(_TMP + name)
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning("chunk cache: cannot write %s: %s", path, exc)
            return -1 if exc.errno in (errno.ENOSPC, errno.EDQUOT) else None
        return len(data)

    def stored(self, name: str, size: int | None) -> None:
        """Account for a page ``write_file`` wrote (on the trio thread)."""
        if size is None or size < 0:
            self.write_errors += 1
            if size == -1:
                # the disk is full: make room by shrinking, reads go on from the store
                self.capacity = max(0, self.used // 2)
                log.warning("chunk cache: disk full, shrinking to %d bytes", self.capacity)
                self._evict()
            return
        if name in self._pages:
            return
        self._pages[name] = size
        self.used += size
        self._evict()

    def _remember(self, name: str, data: bytes, *, ahead: bool = False) -> None:
        self._memory[name] = data
        self._memory.move_to_end(name)
        if ahead:
            self._unread.add(name)
        else:
            self._unread.discard(name)
        while len(self._memory) > self.memory_pages:
            # least recently used first, pages read ahead and not read yet last: LRU alone
            # dropped the reader's next page once the pages it had just read (moved to the
            # end by their reads) outnumbered the slack above the read-ahead window
            victim = next((n for n in self._memory if n not in self._unread),
                          next(iter(self._memory)))
            del self._memory[victim]
            self._unread.discard(victim)

    def _close(self, name: str) -> None:
        fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)

    def _forget(self, name: str) -> None:
        self._close(name)
        size = self._pages.pop(name, None)
        if size is not None:
            self.used -= size
        self._memory.pop(name, None)
        self._unread.discard(name)

    def _evict(self) -> None:
        while self.used > self.capacity and self._pages:
            name, size = self._pages.popitem(last=False)
            self.used -= size
            # a copy in memory stays, under memory's own bound: pages read ahead into a
            # cache smaller than the read-ahead would otherwise be gone before their reader
            self._close(name)
            self.evictions += 1
            with contextlib.suppress(OSError):
                self._path(name).unlink()

    def clear(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        for name in list(self._pages):
            with contextlib.suppress(OSError):
                self._path(name).unlink()
        self._pages.clear()
        self._memory.clear()
        self._unread.clear()
        self.used = 0

    def statistics(self) -> dict[str, Any]:
        return {
            "pages": len(self._pages),
            "bytes": self.used,
            "capacity": self.capacity,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "write_errors": self.write_errors,
        }
