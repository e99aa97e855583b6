"""The errno boundary: every FUSE handler runs inside ``fuse_errors``.

pyfuse3 handlers may raise nothing but ``FUSEError``: a ``StorefsError`` becomes its class's
errno, an ``OSError`` its own errno, and anything unexpected is logged with its traceback
and answered with EIO (the mount keeps running).  ``trio.Cancelled`` and other
``BaseException``s pass through untouched.  Exception groups from a nursery inside a
handler are reduced to their first leaf.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from storefs.errors import StorefsError, errno_of

log = logging.getLogger("storefs.fuse")

P = ParamSpec("P")
T = TypeVar("T")

#: answers that are part of normal operation, not worth more than a debug line
QUIET = frozenset({errno.ENOENT, errno.ENODATA, errno.EEXIST, errno.ENOTEMPTY,
                   errno.ENOTDIR, errno.EISDIR, errno.EOPNOTSUPP, errno.EPERM,
                   errno.EINVAL, errno.EROFS, errno.ENAMETOOLONG, errno.ESTALE})


def leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside ``exc`` (``exc`` itself if it is not a group)."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def to_errno(exc: BaseException) -> int:
    return errno_of(leaf(exc))


Handler = Callable[P, Coroutine[Any, Any, T]]


def fuse_errors(fn: Handler[P, T]) -> Handler[P, T]:
    """Turn whatever ``fn`` raises into ``FUSEError`` (see the module docstring)."""

    @functools.wraps(fn)
    async def handler(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except Exception as exc:
            inner = leaf(exc)
            if isinstance(inner, pyfuse3.FUSEError):
                raise inner from None
            code = errno_of(inner)
            if isinstance(inner, StorefsError | OSError):
                level = logging.DEBUG if code in QUIET else logging.WARNING
                log.log(level, "%s: %s", fn.__name__, inner)
            else:
                log.error("%s: unexpected error", fn.__name__, exc_info=exc)
                code = errno.EIO
            raise pyfuse3.FUSEError(code) from None

    return handler
