"""Pages a random reader reads through FUSE go into the kernel's page cache whole.

A random reader of a remote file (a database, an index lookup, fio) asks for 4 KiB at a
time.  The first read of a chunk fetches the whole chunk (1 MiB by default) into the chunk
cache, but the kernel only keeps the 4 KiB it asked for: each later read of the same chunk
is one more FUSE round trip, served from the chunk cache.  ``KernelPages`` hands the whole
chunk to the kernel (FUSE ``notify_store``) when a random reader's read reaches the daemon
(the kernel lacks that page: never read, or dropped by memory pressure or ``fadvise``), so
its other reads of that chunk never leave the kernel, as on a local disk.  200,000 random
4 KiB reads of a 256 MiB file on a mem:// mount: 5.6 -> 0.7 s, daemon CPU 3.9 -> 0.4 s.
(fio with ``--invalidate=1 --time_based`` drops the file's pages at every pass over it,
so the bench's fio row cannot show this.)

Pushing bytes into the page cache must never put old bytes over new ones:

- a page on its way is not offered again;
- only pages of the version the kernel caches for the inode (``kernel_etag``), of an
  inode without local changes and without a handle open for writing, are offered;
- the store runs in a worker thread: the kernel locks each page while it fills it, and a
  page whose read is pending (ours to answer, on the trio thread) would otherwise wait
  for the very loop that is blocked in the store;
- ``settle(inode)`` waits until that inode's pushes are done.  ``Filesystem.open`` calls it
  after the handle counts (a writer opened from then on makes every later offer a
  refusal) and before the open is answered (the kernel drops stale pages after an open
  without ``keep_cache``, so no push of an older version may land later); a truncate
  calls it once the file is dirty.

``store`` is ``pyfuse3.notify_store`` in a mount (``storefs.fuse`` injects it; this layer
knows nothing of FUSE); errors (the kernel forgot the inode, the mount is going away, a
kernel without notify_store) only end the push: the pages are read through FUSE instead.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

import trio

from storefs.backends.base import ETag
from storefs.fs.inodes import Inode

log = logging.getLogger(__name__)

#: ``store(ino, offset, data)``: blocking, called in a worker thread
Store = Callable[[int, int, bytes], None]


class KernelPages:
    """Offers whole fetched pages to the kernel's page cache (see the module docstring)."""

    def __init__(self, store: Store, nursery: trio.Nursery) -> None:
        self._store = store
        self._nursery = nursery
        #: ino -> offsets of the pages on their way, and the event set when none is left
        self._inflight: dict[int, tuple[set[int], trio.Event]] = {}
        self._limiter = trio.CapacityLimiter(2)
        self.pushed = 0
        self.pushed_bytes = 0
        self.refused = 0
        self.enabled = True

    def offer(self, inode: Inode, etag: ETag, offset: int,
              load: Callable[[], bytes | None]) -> None:
        """Push the page at ``offset`` of version ``etag`` (``load()``, called in a worker
        thread, gives its bytes) unless that could put old bytes over new ones, or the
        same page is on its way already.  Called on the trio thread, returns at once."""
        meta = inode.meta
        if (not self.enabled or inode.dirty is not None or inode.path is None
                or meta is None or meta.etag != etag or inode.kernel_etag != etag
                or inode.writers):
            self.refused += 1
            return
        # never past the size the kernel knows: notify_store would extend the file
        limit = min(meta.size, inode.attr.size) - offset
        offsets, _ = self._inflight.setdefault(inode.ino, (set(), trio.Event()))
        if limit <= 0 or offset in offsets:
            if not offsets:
                del self._inflight[inode.ino]
            return
        offsets.add(offset)
        self._nursery.start_soon(self._push, inode.ino, offset, load, limit)

    def _load_and_store(self, ino: int, offset: int, load: Callable[[], bytes | None],
                        limit: int) -> int:
        data = load()
        if not data:
            return 0
        if len(data) > limit:
            data = data[:limit]  # the last page of the file only
        self._store(ino, offset, data)
        return len(data)

    async def _push(self, ino: int, offset: int, load: Callable[[], bytes | None],
                    limit: int) -> None:
        try:
            async with self._limiter:
                sent = await trio.to_thread.run_sync(self._load_and_store, ino, offset, load,
                                                     limit)
            if sent:
                self.pushed += 1
                self.pushed_bytes += sent
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                self.enabled = False
                log.info("the kernel has no FUSE notify_store: pages go through FUSE")
            else:
                log.debug("page push of inode %d at %d failed: %s", ino, offset, exc)
        except Exception as exc:  # a push is an optimisation: it never takes the mount down
            log.debug("page push of inode %d at %d failed: %r", ino, offset, exc)
        finally:
            offsets, done = self._inflight[ino]
            offsets.discard(offset)
            if not offsets:
                del self._inflight[ino]
                done.set()

    async def settle(self, inode: Inode) -> None:
        """Until no push into ``inode``'s pages is in flight."""
        entry = self._inflight.get(inode.ino)
        if entry is not None:
            await entry[1].wait()

    def statistics(self) -> dict[str, int]:
        return {"pushed": self.pushed, "pushed_bytes": self.pushed_bytes,
                "refused": self.refused}
