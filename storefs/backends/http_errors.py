"""HTTP statuses and transport failures -> storefs errors, as data (for ``http.py``).

Web servers answer errors with a status and an HTML page meant for people, so only the
status counts.  Every 5xx (but 501), 408, 425 and 429, and every reset, timeout or broken
connection, is ``TransientError``: ``storefs.backends.retrying`` tries again; the backend
itself never retries.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx

from storefs.backends._netreason import network_reason
from storefs.errors import (
    AuthError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    StorefsError,
    TooLarge,
    TransientError,
    Unsupported,
)

#: HTTP status -> storefs error class (statuses not here: ``StorefsError``, i.e. EIO)
STATUSES: dict[int, type[StorefsError]] = {
    401: AuthError,
    403: PermissionDenied,
    404: NotFound,
    405: Unsupported,
    408: TransientError,
    410: NotFound,
    412: PreconditionFailed,
    413: TooLarge,
    414: TooLarge,
    425: TransientError,
    429: TransientError,
    501: Unsupported,
}

#: transport failure -> class; the first match in this order wins.  Every one of them may
#: go away on a second try (a server restarting, a connection the server closed while it
#: sat in the pool), except a URL httpx cannot speak at all.
TRANSPORT: tuple[tuple[type[httpx.HTTPError], type[StorefsError]], ...] = (
    (httpx.UnsupportedProtocol, StorefsError),
    (httpx.TimeoutException, TransientError),
    (httpx.NetworkError, TransientError),
    (httpx.RemoteProtocolError, TransientError),
    (httpx.DecodingError, TransientError),
    (httpx.HTTPError, TransientError),
)


def status_class(status: int) -> type[StorefsError]:
    if status >= 500 and status != 501:
        return TransientError
    return STATUSES.get(status, StorefsError)


def status_error(status: int, reason: str, what: str) -> StorefsError:
    """``http: WHAT: 404 Not Found`` as the right storefs exception."""
    phrase = " ".join(reason.split())[:80]
    return status_class(status)(f"http: {what}: {status} {phrase}".rstrip())


def transport_class(exc: httpx.HTTPError) -> type[StorefsError]:
    for kind, cls in TRANSPORT:
        if isinstance(exc, kind):
            return cls
    return StorefsError


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and the members of exception groups among them
    (trio reports a refused connection as a group of the attempts it made)."""
    todo: list[BaseException] = [exc]
    seen: list[BaseException] = []
    while todo and len(seen) < 50:
        e = todo.pop(0)
        if any(e is s for s in seen):
            continue
        seen.append(e)
        yield e
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)


def reason(exc: BaseException) -> str:
    """A few secret-free words on why a request failed ("connection refused")."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    general = network_reason(exc)
    if general != "connection failed":
        return general
    for e in _chain(exc):
        specific = network_reason(e)
        if specific != "connection failed":
            return specific
    return general


def tls_problem(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind ``exc``, if a TLS handshake is what failed."""
    for e in _chain(exc):
        if isinstance(e, ssl.SSLError):
            return e
    return None


def transport_error(exc: httpx.HTTPError, what: str) -> StorefsError:
    """``http: WHAT: connection reset`` as the right storefs exception."""
    return transport_class(exc)(f"http: {what}: {reason(exc)}")
