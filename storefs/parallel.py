"""Fan-outs of store requests that fail with one error, as their callers expect.

trio's nurseries raise an ``ExceptionGroup`` whenever a task fails, and one with several
members when tasks fail together: every part of an upload refused by a full store, every
delete of an ``rm -r`` when the network went away.  The layers above catch
``StorefsError`` (write-back keeps the file and counts the failure, ``umount`` names the
file it could not upload, FUSE answers the errno); a group slips past all of them and
ends as an "internal error".  ``fan_out`` is a nursery whose failure is one exception.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import trio

from storefs.errors import StorefsError

log = logging.getLogger(__name__)


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def one_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception that stands for ``group``: the first ``StorefsError``, else the first
    other error, else (only cancellations) the first ``Cancelled``, which the cancel scope
    that caused it then catches.  A group holding anything else that is not an
    ``Exception`` (KeyboardInterrupt, SystemExit) stands for itself."""
    leaves = list(_leaves(group))
    if any(not isinstance(e, Exception | trio.Cancelled) for e in leaves):
        return group
    failures = [e for e in leaves if not isinstance(e, trio.Cancelled)]
    chosen = next((e for e in failures if isinstance(e, StorefsError)),
                  failures[0] if failures else leaves[0])
    for other in failures:
        if other is not chosen:
            log.debug("also failed: %s: %s", type(other).__name__, other)
    return chosen


@contextlib.asynccontextmanager
async def fan_out() -> AsyncIterator[trio.Nursery]:
    """``trio.open_nursery()`` whose failure is ``one_error`` of what its tasks raised."""
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        err = one_error(group)
        if err is group:
            raise
        raise err from None
