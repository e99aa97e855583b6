"""Reading versions of objects: pages through the chunk cache, with read-ahead.

``Fetcher`` brings pages into the ``ChunkCache``: one ranged GET per missing page, never two
at once for the same page, at most ``parallel`` at a time, each conditional on the etag so
a page is always of the version asked for (``PreconditionFailed`` otherwise).

``ReadAhead`` (one per open file handle) detects sequential reading and grows a window of
pages fetched ahead in the background: 1, 2, 4... up to ``max_pages``, reset by a seek, as
the kernel's own readahead and mountpoint-s3's prefetcher do.

A *version reader* reads byte ranges of one version of an object: ``RemoteVersion`` through
the fetcher, ``LocalVersion`` with ``pread`` on a file of a local store (file://), whose
open descriptor keeps that version readable even after the name is replaced or removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Protocol

import trio

from storefs.backends.base import Backend, ETag
from storefs.cache.chunks import ChunkCache
from storefs.errors import IntegrityError

log = logging.getLogger(__name__)


class VersionReader(Protocol):
    size: int

    async def read(self, start: int, end: int, ahead: ReadAhead | None = None) -> bytes:
        """Bytes ``[start, end)`` (clamped to the version's size)."""
        ...

    def close(self) -> None: ...


class _Pending:
    __slots__ = ("data", "error", "event")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.data: bytes | None = None
        self.error: BaseException | None = None


class ReadAhead:
    """Sequential-read detector of one open file (see the module docstring)."""

    __slots__ = ("max_pages", "next", "window")

    def __init__(self, max_pages: int) -> None:
        self.max_pages = max_pages
        self.next = 0
        self.window = 0

    def observe(self, start: int, end: int, page: int) -> int:
        """Record a read of ``[start, end)``; returns how many pages to fetch ahead."""
        # the kernel issues readahead requests concurrently, so "sequential" tolerates
        # a little reordering around the expected offset
        if abs(start - self.next) <= page:
            self.window = min(self.max_pages, max(1, self.window * 2))
        else:
            self.window = 0
        self.next = max(end, self.next) if self.window else end
        return self.window


class Fetcher:
    """Fills the chunk cache from the store (see the module docstring)."""

    def __init__(self, backend: Backend, cache: ChunkCache, page_size: int,
                 parallel: int) -> None:
        self.backend = backend
        self.cache = cache
        self.page_size = page_size
        self.limiter = trio.CapacityLimiter(parallel)
        self.max_outstanding = 2 * parallel
        self._pending: dict[str, _Pending] = {}
        self._nursery: trio.Nursery | None = None
        self.fetched_bytes = 0
        self.prefetched = 0

    def start(self, nursery: trio.Nursery) -> None:
        """Background read-ahead runs in ``nursery`` (the mount's)."""
        self._nursery = nursery

    async def page(self, key: str, etag: ETag, size: int, index: int) -> bytes:
        """Page ``index`` of version ``etag`` of ``key`` (``size`` bytes long)."""
        data = self.cache.get(key, etag, index)
        if data is not None:
            return data
        name = ChunkCache.name(key, etag, index)
        pending = self._pending.get(name)
        if pending is not None:
            await pending.event.wait()
            if pending.data is not None:
                return pending.data
            # the other fetch failed (perhaps a cancelled read-ahead): try ourselves
        return await self._fetch(name, key, etag, size, index)

    async def _fetch(self, name: str, key: str, etag: ETag, size: int, index: int) -> bytes:
        pending = _Pending()
        self._pending[name] = pending
        try:
            start = index * self.page_size
            end = min(size, start + self.page_size)
            async with self.limiter:
                data = await self.backend.get_range(key, start, end, if_match=etag)
            if len(data) != end - start:
                raise IntegrityError(
                    f"{key}: store returned {len(data)} bytes for [{start}, {end})")
            self.fetched_bytes += len(data)
            self.cache.put(key, etag, index, data)
            pending.data = data
            return data
        except BaseException as exc:
            pending.error = exc
            raise
        finally:
            pending.event.set()
            if self._pending.get(name) is pending:
                del self._pending[name]

    def prefetch(self, key: str, etag: ETag, size: int, first: int, count: int) -> None:
        """Fetch pages ``first..first+count-1`` in the background (best effort)."""
        if self._nursery is None:
            return
        last = (size - 1) // self.page_size
        for index in range(first, min(last, first + count - 1) + 1):
            if len(self._pending) >= self.max_outstanding:
                return
            name = ChunkCache.name(key, etag, index)
            if name in self._pending or self.cache.has(key, etag, index):
                continue
            self.prefetched += 1
            self._nursery.start_soon(self._prefetch_one, name, key, etag, size, index)

    async def _prefetch_one(self, name: str, key: str, etag: ETag, size: int,
                            index: int) -> None:
        if name in self._pending:
            return
        try:
            await self._fetch(name, key, etag, size, index)
        except Exception as exc:
            # a foreground read of the page will retry and report
            log.debug("read-ahead of %s page %d failed: %s", key, index, exc)

    def statistics(self) -> dict[str, Any]:
        return {"fetched_bytes": self.fetched_bytes, "prefetched_pages": self.prefetched,
                "in_flight": len(self._pending)}


class RemoteVersion:
    """One version of a remote object, read page by page through the fetcher."""

    def __init__(self, fetcher: Fetcher, key: str, etag: ETag, size: int) -> None:
        self.fetcher = fetcher
        self.key = key
        self.etag = etag
        self.size = size

    async def read(self, start: int, end: int, ahead: ReadAhead | None = None) -> bytes:
        end = min(end, self.size)
        if end <= start:
            return b""
        page = self.fetcher.page_size
        first, last = start // page, (end - 1) // page
        if ahead is not None:
            window = ahead.observe(start, end, page)
            if window:
                self.fetcher.prefetch(self.key, self.etag, self.size, last + 1, window)
        if first == last:
            data = await self.fetcher.page(self.key, self.etag, self.size, first)
            return data[start - first * page:end - first * page]
        parts: dict[int, bytes] = {}

        async def one(index: int) -> None:
            parts[index] = await self.fetcher.page(self.key, self.etag, self.size, index)

        async with trio.open_nursery() as nursery:
            for index in range(first, last + 1):
                nursery.start_soon(one, index)
        whole = b"".join(parts[i] for i in range(first, last + 1))
        return whole[start - first * page:end - first * page]

    def close(self) -> None:
        pass


class LocalVersion:
    """One version of an object of a local store, read from an open descriptor.

    Reads run on the trio thread: they are page-cache copies of a local disk, and a thread
    hop per 128 KiB request would cost more than the copy (a cold disk read blocks the
    loop for about a millisecond, which we accept for file:// mounts).
    """

    def __init__(self, path: str, size: int) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = size

    async def read(self, start: int, end: int, ahead: ReadAhead | None = None) -> bytes:
        end = min(end, self.size)
        if end <= start:
            return b""
        return os.pread(self.fd, end - start, start)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
