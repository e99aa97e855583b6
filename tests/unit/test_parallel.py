"""``fan_out``: a nursery of store requests fails with one error, whatever failed with it."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from storefs.errors import NotFound, PermissionDenied
from storefs.parallel import fan_out


async def _fail_together(errors: list[BaseException]) -> None:
    """Tasks that all raise in the same scheduling round (so none is cancelled first)."""
    go = trio.Event()

    async def fail(exc: BaseException) -> None:
        with trio.CancelScope(shield=True):  # the first to fail cancels no other
            await go.wait()
        raise exc

    async with fan_out() as nursery:
        for exc in errors:
            nursery.start_soon(fail, exc)
        await trio.testing.wait_all_tasks_blocked()
        go.set()


async def test_tasks_failing_together_give_the_store_error() -> None:
    with pytest.raises(PermissionDenied, match=r"^part 2: denied$"):
        await _fail_together([ValueError("surprise"), PermissionDenied("part 2: denied"),
                              OSError("reset")])


async def test_without_store_errors_one_of_the_failures_stands() -> None:
    with pytest.raises((OSError, ValueError), match=r"^(reset|later)$"):
        await _fail_together([OSError("reset"), ValueError("later")])


async def test_siblings_cancelled_by_a_failure_do_not_hide_it() -> None:
    async def forever() -> None:
        await trio.sleep_forever()

    async def fail() -> None:
        raise NotFound("k: no such object")

    with pytest.raises(NotFound):
        async with fan_out() as nursery:
            nursery.start_soon(forever)
            nursery.start_soon(fail)


async def test_a_cancellation_from_outside_is_caught_by_its_scope() -> None:
    with trio.move_on_after(0.01) as scope:
        async with fan_out() as nursery:
            for _ in range(3):
                nursery.start_soon(trio.sleep_forever)
    assert scope.cancelled_caught


async def test_keyboard_interrupt_is_not_swallowed() -> None:
    with pytest.raises(BaseExceptionGroup) as info:
        await _fail_together([KeyboardInterrupt(), NotFound("x")])
    assert info.group_contains(KeyboardInterrupt)
