"""Taking queued FUSE requests without a trip through trio's scheduler.

pyfuse3 runs each worker task as a loop: wait until ``/dev/fuse`` is readable (take a
``trio.Lock``, then ``trio.lowlevel.wait_readable``), read one request, handle it. So every
request pays a lock checkpoint, an epoll re-registration and a pass of trio's run loop, even
when requests are already queued, as they are whenever several processes use the mount at
once. On the 2-core VM a bare pyfuse3 filesystem answered fio's four 4 KiB random readers
about 5,000 times a second that way, and 33,000-47,000 times with this module.

``install`` replaces pyfuse3's ``_wait_fuse_readable`` (its loop looks the name up in the
module on every turn) with ``QueuedRequestWait``, which first asks ``poll(2)``, with a zero
timeout, whether a request is queued, and if so returns at once, so the worker reads and
handles it straight away. The rules that keep this correct:

* The shortcut is taken only while another task stands guard in the stock wait. pyfuse3
  starts a new worker after a read when no task is waiting; without a guard it would start
  one per request (27,000 in 8 s of fio, measured).
* A task that took the shortcut ``YIELD_EVERY`` times yields once to trio, so uploads,
  timers, worker-thread results and the control socket still run under sustained load.
* The guard, woken because the device is readable, leaves the request to a task paused at
  that yield (it reads as soon as it resumes) and waits again; otherwise it asks ``poll``
  once more, since another task may have read the request since epoll saw it.

A request withdrawn by the kernel between the ``poll`` and the read (its caller killed
while it was queued) makes the read block until the next request arrives; the stock wait
has the same window between ``wait_readable`` and the read.
"""

from __future__ import annotations

import inspect
import logging
import os
import select
from collections.abc import Awaitable, Callable
from typing import Any

import pyfuse3
import trio

log = logging.getLogger(__name__)

#: queued requests a worker takes in a row before it lets the rest of the mount run
YIELD_EVERY = 32

_HOOK = "_wait_fuse_readable"


class QueuedRequestWait:
    """The wait pyfuse3's workers call before each read of ``/dev/fuse``.

    Returns True when a request can be read now, False when the loop should end (the
    stock wait's contract). ``statistics`` counts how each wait ended.
    """

    def __init__(self, fd: int, stock: Callable[[], Awaitable[bool]]) -> None:
        #: pyfuse3's own wait, which this one falls back to
        self.stock = stock
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        #: tasks inside the stock wait: pyfuse3 counts them as idle readers
        self._guards = 0
        #: tasks paused at the periodic yield, about to read again
        self._yielding = 0
        self._streak = 0
        #: waits that found a request queued, and waits that slept in the stock wait
        self.queued = 0
        self.slept = 0

    def _ready(self) -> bool:
        return bool(self._poll.poll(0))

    async def __call__(self) -> bool:
        while True:
            if self._guards and self._ready():
                self._streak += 1
                if self._streak >= YIELD_EVERY:
                    self._streak = 0
                    self._yielding += 1
                    try:
                        await trio.lowlevel.checkpoint()
                    finally:
                        self._yielding -= 1
                    continue  # others ran meanwhile: look again
                self.queued += 1
                return True
            self._guards += 1
            try:
                self.slept += 1
                if not await self.stock():
                    return False
            finally:
                self._guards -= 1
            if not self._yielding and self._ready():
                return True

    def statistics(self) -> dict[str, int]:
        return {"queued": self.queued, "slept": self.slept}


def _fuse_fd() -> int | None:
    """The process's one ``/dev/fuse`` descriptor (pyfuse3 does not expose it)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "/dev/fuse":
                found.append(int(name))
        except OSError:
            continue  # closed while listing (the listing's own descriptor, for one)
    return found[0] if len(found) == 1 else None


def install() -> QueuedRequestWait | None:
    """Put ``QueuedRequestWait`` in pyfuse3's loop; call after ``pyfuse3.init``.

    Returns None, leaving pyfuse3 as it is, when this pyfuse3 has no such hook or the
    device cannot be told apart.
    """
    stock: Any = getattr(pyfuse3, _HOOK, None)
    if isinstance(stock, QueuedRequestWait):
        return stock
    if stock is None or not inspect.iscoroutinefunction(stock):
        log.debug("pyfuse3 %s has no %s to replace: stock request loop",
                  getattr(pyfuse3, "__version__", "?"), _HOOK)
        return None
    fd = _fuse_fd()
    if fd is None:
        log.debug("no single /dev/fuse descriptor: stock request loop")
        return None
    wait = QueuedRequestWait(fd, stock)
    setattr(pyfuse3, _HOOK, wait)
    return wait


def uninstall() -> None:
    """Give pyfuse3 its own wait back (after the loop has ended)."""
    current = getattr(pyfuse3, _HOOK, None)
    if isinstance(current, QueuedRequestWait):
        setattr(pyfuse3, _HOOK, current.stock)
