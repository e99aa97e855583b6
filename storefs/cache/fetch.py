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
from collections.abc import Callable
from typing import Any, Protocol

import trio

from storefs.backends.base import Backend, ETag
from storefs.cache.chunks import ChunkCache
from storefs.errors import IntegrityError
from storefs.parallel import fan_out

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

    __slots__ = ("frontier", "max_pages", "next", "window")

    def __init__(self, max_pages: int) -> None:
        self.max_pages = max_pages
        self.next = 0
        self.window = 0
        #: the last page read ahead so far (-1: none)
        self.frontier = -1

    def observe(self, start: int, end: int, page: int) -> int:
        """Record a read of ``[start, end)``; returns how many pages to fetch ahead."""
        # the kernel issues readahead requests concurrently, so "sequential" tolerates
        # a little reordering around the expected offset
        if abs(start - self.next) <= page:
            self.window = min(self.max_pages, max(1, self.window * 2))
        else:
            self.window = 0
            self.frontier = -1
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
        #: pages fetched by one read-ahead request (8 MiB with the default page size)
        self.run_pages = max(1, (8 << 20) // page_size)
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
            name = self.cache.remember(key, etag, index, data)
            pending.data = data
            pending.event.set()
            if self.cache.wants(name):
                self.cache.stored(name, await trio.to_thread.run_sync(
                    self.cache.write_file, name, data))
            return data
        except BaseException as exc:
            pending.error = exc
            raise
        finally:
            pending.event.set()
            if self._pending.get(name) is pending:
                del self._pending[name]

    def prefetch(self, key: str, etag: ETag, size: int, first: int, count: int) -> None:
        """Fetch pages ``first..first+count-1`` in the background (best effort).

        Consecutive missing pages are fetched together, up to ``run_pages`` per ranged GET:
        a request costs far more than its bytes on most stores (signing, a thread hop, a
        round trip), so a sequential reader gets 8 MiB per request and a random reader
        still fetches only the page it needs."""
        if self._nursery is None:
            return
        last = (size - 1) // self.page_size
        run: list[int] = []
        for index in range(first, min(last, first + count - 1) + 1):
            if len(self._pending) + len(run) >= self.max_outstanding * self.run_pages:
                break
            name = ChunkCache.name(key, etag, index)
            if name in self._pending or self.cache.has(key, etag, index):
                self._start_run(key, etag, size, run)
                run = []
                continue
            run.append(index)
            if len(run) == self.run_pages:
                self._start_run(key, etag, size, run)
                run = []
        self._start_run(key, etag, size, run)

    def _start_run(self, key: str, etag: ETag, size: int, run: list[int]) -> None:
        if not run or self._nursery is None:
            return
        pendings = []
        for index in run:
            pending = _Pending()
            self._pending[ChunkCache.name(key, etag, index)] = pending
            pendings.append(pending)
        self.prefetched += len(run)
        self._nursery.start_soon(self._fetch_run, key, etag, size, list(run), pendings)

    async def _fetch_run(self, key: str, etag: ETag, size: int, run: list[int],
                         pendings: list[_Pending]) -> None:
        start = run[0] * self.page_size
        end = min(size, (run[-1] + 1) * self.page_size)
        try:
            async with self.limiter:
                data = await self.backend.get_range(key, start, end, if_match=etag)
            if len(data) != end - start:
                raise IntegrityError(
                    f"{key}: store returned {len(data)} bytes for [{start}, {end})")
            self.fetched_bytes += len(data)
            pages: list[tuple[str, bytes]] = []
            for i, (index, pending) in enumerate(zip(run, pendings, strict=True)):
                page = data[i * self.page_size:(i + 1) * self.page_size]
                name = self.cache.remember(key, etag, index, page, ahead=True)
                pending.data = page
                pending.event.set()  # readers need not wait for the disk
                if self.cache.wants(name):
                    pages.append((name, page))
            del data  # the run's buffer is not kept while its pages go to disk
            # page files are written off the trio thread: a disk under write pressure
            # must not stall every other request
            sizes = await trio.to_thread.run_sync(
                lambda: [self.cache.write_file(n, p) for n, p in pages])
            for (name, _), written in zip(pages, sizes, strict=True):
                self.cache.stored(name, written)
        except Exception as exc:
            # a foreground read of the page will retry and report
            log.debug("read-ahead of %s pages %d-%d failed: %s", key, run[0], run[-1], exc)
            for pending in pendings:
                pending.error = exc
        finally:
            for index, pending in zip(run, pendings, strict=True):
                pending.event.set()
                name = ChunkCache.name(key, etag, index)
                if self._pending.get(name) is pending:
                    del self._pending[name]

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
        #: told ``(offset, load)`` of each page a random (not sequential) reader read
        #: through FUSE, so the kernel lacks it; ``load()`` (thread-safe) gives the whole
        #: page (``storefs.fs.kernel_pages``)
        self.on_read: Callable[[int, Callable[[], bytes | None]], None] | None = None

    async def read(self, start: int, end: int, ahead: ReadAhead | None = None) -> bytes:
        end = min(end, self.size)
        if end <= start:
            return b""
        page = self.fetcher.page_size
        first, last = start // page, (end - 1) // page
        if ahead is not None:
            window = ahead.observe(start, end, page)
            target = min(last + window, (self.size - 1) // page)
            begin = max(last + 1, ahead.frontier + 1)
            # read ahead in whole runs (one request each), not a page per call
            if window and target >= begin and (target - begin + 1 >= self.fetcher.run_pages
                                               or target == (self.size - 1) // page
                                               or window < self.fetcher.run_pages):
                self.fetcher.prefetch(self.key, self.etag, self.size, begin, target - begin + 1)
                ahead.frontier = target
        if first == last:
            lo, hi = start - first * page, end - first * page
            # the kernel asked, so it lacks the page: a random reader gets the whole chunk
            # into the kernel's page cache, a sequential one is left to read-ahead
            tell = self.on_read if ahead is None or not ahead.window else None
            cached = self.fetcher.cache.read(self.key, self.etag, first, lo, hi)
            if cached is not None:
                if tell is not None:
                    load = self.fetcher.cache.loader(self.key, self.etag, first)
                    if load is not None:
                        tell(first * page, load)
                return cached
            data = await self.fetcher.page(self.key, self.etag, self.size, first)
            if tell is not None:
                tell(first * page, lambda: data)
            return data[lo:hi]
        parts: dict[int, bytes] = {}

        async def one(index: int) -> None:
            parts[index] = await self.fetcher.page(self.key, self.etag, self.size, index)

        async with fan_out() as nursery:
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
