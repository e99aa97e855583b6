"""Retries with jittered exponential backoff, for every backend, in one place.

``RetryingBackend`` wraps a backend: each call that fails with a transient error
(``Backend.is_transient``: 5xx, throttling, connection resets, timeouts) is tried again
after a "full jitter" delay (uniform in ``[0, min(cap, base * 2**attempt)]``, as the AWS
architecture blog recommends: it spreads a thundering herd best) until the caller's
deadline.  The deadline depends on who is waiting: a foreground FUSE request (``ls``,
``open``) should fail in seconds rather than hang the shell, while background write-back
may keep trying for many minutes.  Callers choose with ``retry_deadline(seconds)``, a
context manager setting a context variable that trio tasks inherit.

Operations are retried only where a repeat is harmless: every interface method is
idempotent or conditional, except that a conditional write whose first attempt did land
may be reported as a conflict on retry; write-back resolves that by comparing the store's
MD5 with the local bytes (``WriteBack._landed``).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from storefs.backends.base import (
    Backend,
    ETag,
    ListPage,
    Metadata,
    ObjectMeta,
    StoreUsage,
    Upload,
)
from storefs.errors import TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: seconds a foreground request keeps retrying, by default
FOREGROUND_DEADLINE = 30.0
#: seconds background write-back keeps retrying one upload before it reports failure
BACKGROUND_DEADLINE = 600.0

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar(
    "storefs_retry_deadline", default=FOREGROUND_DEADLINE
)


@contextlib.contextmanager
def retry_deadline(seconds: float) -> Iterator[None]:
    """Retry transient failures for up to ``seconds`` in calls made inside this block."""
    token = _deadline.set(seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff parameters: delays grow from ``base`` doubling up to ``cap`` seconds."""

    base: float = 0.1
    cap: float = 5.0
    max_attempts: int = 20

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The full-jitter delay before retry number ``attempt`` (0-based)."""
        return rng.uniform(0.0, min(self.cap, self.base * (2.0**attempt)))


class _Retrier:
    def __init__(self, backend: Backend, policy: RetryPolicy, rng: random.Random) -> None:
        self.backend = backend
        self.policy = policy
        self.rng = rng
        self.retries = 0
        self.failures = 0

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        deadline = trio.current_time() + _deadline.get()
        attempt = 0
        while True:
            try:
                return await fn()
            except Exception as exc:
                if not self.backend.is_transient(exc):
                    raise
                delay = self.policy.delay(attempt, self.rng)
                attempt += 1
                if attempt >= self.policy.max_attempts or trio.current_time() + delay > deadline:
                    self.failures += 1
                    log.warning("%s: giving up after %d attempts: %s", what, attempt, exc)
                    if isinstance(exc, TransientError):
                        raise
                    raise TransientError(f"{what}: {exc}") from exc
                self.retries += 1
                log.info("%s: %s; retry %d in %.2fs", what, exc, attempt, delay)
                await trio.sleep(delay)


class _RetryingUpload(Upload):
    def __init__(self, inner: Upload, retrier: _Retrier) -> None:
        self.inner = inner
        self.key = inner.key
        self.retrier = retrier

    async def write_part(self, number: int, data: bytes) -> None:
        await self.retrier.call(f"upload {self.key} part {number}",
                                lambda: self.inner.write_part(number, data))

    async def copy_part(
        self, number: int, src: str, start: int, end: int, *, if_match: ETag | None = None
    ) -> None:
        await self.retrier.call(f"upload {self.key} part {number} from {src}",
                                lambda: self.inner.copy_part(number, src, start, end,
                                                             if_match=if_match))

    async def complete(self) -> ObjectMeta:
        return await self.retrier.call(f"complete {self.key}", self.inner.complete)

    async def abort(self) -> None:
        await self.retrier.call(f"abort {self.key}", self.inner.abort)


class RetryingBackend(Backend):
    """``inner`` with transient failures retried; everything else passes through."""

    def __init__(self, inner: Backend, policy: RetryPolicy | None = None,
                 rng: random.Random | None = None) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self._r = _Retrier(inner, policy or RetryPolicy(), rng or random.Random())

    async def connect(self) -> None:
        await self.inner.connect()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def describe(self) -> str:
        return self.inner.describe()

    def check_name(self, key: str) -> None:
        self.inner.check_name(key)

    def local_path(self, key: str) -> str | None:
        return self.inner.local_path(key)

    async def put_file(
        self,
        key: str,
        fd: int,
        size: int,
        metadata: Metadata,
        *,
        content_type: str | None = None,
        if_match: ETag | None = None,
        if_none_match: bool = False,
        durable: bool = True,
        link_from: str | None = None,
    ) -> ObjectMeta:
        return await self._r.call(
            f"put {key}",
            lambda: self.inner.put_file(key, fd, size, metadata, content_type=content_type,
                                        if_match=if_match, if_none_match=if_none_match,
                                        durable=durable, link_from=link_from),
        )

    def is_transient(self, exc: BaseException) -> bool:
        return self.inner.is_transient(exc)

    def statistics(self) -> dict[str, Any]:
        stats = dict(self.inner.statistics())
        stats["retries"] = self._r.retries
        stats["retry_failures"] = self._r.failures
        return stats

    async def head(self, key: str) -> ObjectMeta:
        return await self._r.call(f"head {key}", lambda: self.inner.head(key))

    async def list_page(
        self, prefix: str, *, delimiter: str = "/", token: str | None = None, limit: int = 0
    ) -> ListPage:
        return await self._r.call(
            f"list {prefix}",
            lambda: self.inner.list_page(prefix, delimiter=delimiter, token=token, limit=limit),
        )

    async def list(self, prefix: str, *, delimiter: str = "/") -> AsyncIterator[ListPage]:
        token: str | None = None
        while True:
            page = await self.list_page(prefix, delimiter=delimiter, token=token)
            yield page
            token = page.next_token
            if token is None:
                return

    async def get_range(
        self, key: str, start: int, end: int, *, if_match: ETag | None = None
    ) -> bytes:
        return await self._r.call(
            f"get {key}[{start}:{end}]",
            lambda: self.inner.get_range(key, start, end, if_match=if_match),
        )

    async def put(
        self,
        key: str,
        data: bytes,
        metadata: Metadata,
        *,
        content_type: str | None = None,
        if_match: ETag | None = None,
        if_none_match: bool = False,
    ) -> ObjectMeta:
        return await self._r.call(
            f"put {key}",
            lambda: self.inner.put(key, data, metadata, content_type=content_type,
                                   if_match=if_match, if_none_match=if_none_match),
        )

    async def begin_upload(
        self,
        key: str,
        metadata: Metadata,
        *,
        part_size: int,
        content_type: str | None = None,
        if_match: ETag | None = None,
        if_none_match: bool = False,
        size: int | None = None,
    ) -> Upload:
        inner = await self._r.call(
            f"begin upload {key}",
            lambda: self.inner.begin_upload(key, metadata, part_size=part_size,
                                            content_type=content_type, if_match=if_match,
                                            if_none_match=if_none_match, size=size),
        )
        return _RetryingUpload(inner, self._r)

    async def delete(self, key: str) -> None:
        await self._r.call(f"delete {key}", lambda: self.inner.delete(key))

    async def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        await self._r.call(f"delete {len(keys)} keys", lambda: self.inner.delete_many(keys))

    async def copy(
        self,
        src: str,
        dst: str,
        *,
        metadata: Metadata | None = None,
        if_match: ETag | None = None,
    ) -> ObjectMeta:
        return await self._r.call(
            f"copy {src} -> {dst}",
            lambda: self.inner.copy(src, dst, metadata=metadata, if_match=if_match),
        )

    async def copy_listed(self, listed: ObjectMeta, dst: str) -> None:
        await self._r.call(f"copy {listed.key} -> {dst}",
                           lambda: self.inner.copy_listed(listed, dst))

    async def delete_listed(self, listed: Sequence[ObjectMeta]) -> None:
        listed = list(listed)
        await self._r.call(f"delete {len(listed)} keys", lambda: self.inner.delete_listed(listed))

    async def rename(self, src: str, dst: str) -> ObjectMeta:
        # not retried as a whole: copy may have landed and delete failed; the inner
        # backend's rename is built from retried primitives where it is not atomic
        return await self._r.call(f"rename {src} -> {dst}", lambda: self.inner.rename(src, dst))

    async def exchange(self, a: str, b: str) -> None:
        await self._r.call(f"exchange {a} <-> {b}", lambda: self.inner.exchange(a, b))

    async def make_dir(self, key: str, metadata: Metadata) -> ObjectMeta:
        return await self._r.call(f"mkdir {key}", lambda: self.inner.make_dir(key, metadata))

    async def remove_dir(self, key: str) -> None:
        await self._r.call(f"rmdir {key}", lambda: self.inner.remove_dir(key))

    async def set_metadata(
        self, key: str, metadata: Metadata, *, if_match: ETag | None = None
    ) -> ObjectMeta:
        return await self._r.call(
            f"set metadata {key}",
            lambda: self.inner.set_metadata(key, metadata, if_match=if_match),
        )

    async def statfs(self) -> StoreUsage | None:
        return await self._r.call("statfs", self.inner.statfs)

    async def sync(self, key: str) -> None:
        await self._r.call(f"sync {key}", lambda: self.inner.sync(key))
