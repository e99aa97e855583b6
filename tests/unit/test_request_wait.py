"""The wait before each read of /dev/fuse (storefs/fuse/request_wait.py), on a pipe.

A pipe with a byte in it stands for a device with requests queued; the "stock" wait is
trio's own wait for readability, as in pyfuse3.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import trio

from storefs.fuse.request_wait import YIELD_EVERY, QueuedRequestWait


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def make_wait(fd: int) -> tuple[QueuedRequestWait, list[str]]:
    calls: list[str] = []

    async def stock() -> bool:
        calls.append("stock")
        await trio.lowlevel.wait_readable(fd)
        return True

    return QueuedRequestWait(fd, stock), calls


async def test_without_a_guard_the_stock_wait_is_used(pipe: tuple[int, int]) -> None:
    # pyfuse3 starts a worker whenever none waits in the stock wait: the shortcut would
    # have it start one per request
    r, w = pipe
    os.write(w, b"x")
    wait, calls = make_wait(r)
    assert await wait() is True
    assert calls == ["stock"]
    assert wait.statistics() == {"queued": 0, "slept": 1}


async def test_queued_requests_are_taken_while_a_guard_waits(pipe: tuple[int, int]) -> None:
    r, w = pipe
    wait, calls = make_wait(r)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)  # the guard: sleeps, nothing is queued yet
        await trio.testing.wait_all_tasks_blocked()
        os.write(w, b"x")
        assert await wait() is True  # queued: no sleep in trio
        assert wait.statistics()["queued"] == 1
        nursery.cancel_scope.cancel()
    assert calls == ["stock"]


async def test_a_guard_woken_for_a_request_another_task_took_waits_again(
        pipe: tuple[int, int]) -> None:
    r, w = pipe
    woken = 0

    async def stock() -> bool:
        nonlocal woken
        await trio.lowlevel.wait_readable(r)
        woken += 1
        if woken == 1:
            os.read(r, 1)  # another worker read the request between epoll and this one
        return True

    wait = QueuedRequestWait(r, stock)
    returned: list[bool] = []

    async def guard() -> None:
        returned.append(await wait())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(guard)
        await trio.testing.wait_all_tasks_blocked()
        os.write(w, b"x")
        await trio.testing.wait_all_tasks_blocked()
        assert (woken, returned) == (1, [])  # nothing left to read: it sleeps again
        os.write(w, b"y")
        await trio.testing.wait_all_tasks_blocked()
        assert (woken, returned) == (2, [True])


async def test_a_worker_taking_queued_requests_lets_the_rest_of_the_mount_run(
        pipe: tuple[int, int]) -> None:
    # under sustained load the queue never empties: uploads, timers and the control
    # socket must still get their turn
    r, w = pipe
    wait, _ = make_wait(r)
    served = 0
    seen_by_other: list[int] = []

    async def other_task() -> None:
        seen_by_other.append(served)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)  # the guard
        await trio.testing.wait_all_tasks_blocked()
        os.write(w, b"x")  # stays readable: a request is always queued
        nursery.start_soon(other_task)
        for _ in range(50 * YIELD_EVERY):
            assert await wait() is True
            served += 1  # a handler that never awaits, like a cached getattr
        nursery.cancel_scope.cancel()
    assert wait.statistics()["queued"] > 40 * YIELD_EVERY  # the shortcut was taken
    assert seen_by_other and seen_by_other[0] <= 4 * YIELD_EVERY, seen_by_other
