"""Retry timing: jittered exponential backoff, deadlines per caller, on the trio clock."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from storefs.backends.base import ObjectMeta
from storefs.backends.mem import MemBackend
from storefs.backends.retrying import RetryingBackend, RetryPolicy, retry_deadline
from storefs.errors import NotFound, TransientError


class Flaky(MemBackend):
    """A real in-memory store whose next ``failures`` HEADs fail transiently."""

    def __init__(self, failures: int) -> None:
        super().__init__("flaky", "")
        self.failures = failures
        self.calls: list[float] = []

    async def head(self, key: str) -> ObjectMeta:
        self.calls.append(trio.current_time())
        if self.failures > 0:
            self.failures -= 1
            raise TransientError("503 Slow Down")
        return await super().head(key)


def test_policy_delays_are_bounded_full_jitter() -> None:
    policy = RetryPolicy(base=0.1, cap=5.0)
    rng = random.Random(1)
    for attempt in range(12):
        ceiling = min(5.0, 0.1 * 2**attempt)
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # the whole window is used (jitter)


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_transient_errors_are_retried_until_success(clock: trio.testing.MockClock) -> None:
    inner = Flaky(failures=4)
    await inner.put("k", b"data", {})
    backend = RetryingBackend(inner, RetryPolicy(base=0.1, cap=1.0), random.Random(3))
    meta = await backend.head("k")
    assert meta.size == 4
    assert len(inner.calls) == 5
    gaps = [b - a for a, b in zip(inner.calls, inner.calls[1:], strict=False)]
    assert all(0 <= g <= min(1.0, 0.1 * 2**i) + 1e-9 for i, g in enumerate(gaps))
    assert backend.statistics()["retries"] == 4


async def test_foreground_deadline_gives_up_in_seconds(clock: trio.testing.MockClock) -> None:
    inner = Flaky(failures=10**6)
    backend = RetryingBackend(inner, RetryPolicy(base=0.5, cap=2.0, max_attempts=10**6),
                              random.Random(5))
    start = trio.current_time()
    with retry_deadline(5.0), pytest.raises(TransientError):
        await backend.head("k")
    assert trio.current_time() - start <= 5.0
    assert backend.statistics()["retry_failures"] == 1
    # background work keeps going much longer with the same policy
    inner.calls.clear()
    inner.failures = 30
    await inner.put("k", b"x", {})
    with retry_deadline(600.0):
        await backend.head("k")
    assert len(inner.calls) == 31


async def test_permanent_errors_are_not_retried(clock: trio.testing.MockClock) -> None:
    inner = Flaky(failures=0)
    backend = RetryingBackend(inner)
    with pytest.raises(NotFound):
        await backend.head("missing")
    assert len(inner.calls) == 1
