"""Short, secret-free reasons for network failures of the ``requests``-based SDKs.

google-cloud-storage and python-swiftclient both speak HTTP through ``requests``; when a
connection fails, ``str(exc)`` is a paragraph holding the URL (which may carry an upload
session id or a storage token) and nested reprs.  Users need one phrase instead:
"connection refused", "host name not found", "timed out"...
"""

from __future__ import annotations

import socket
import ssl

#: (substring of the exception chain's text, reason) in order of preference
_TEXT_REASONS: tuple[tuple[str, str], ...] = (
    ("Connection refused", "connection refused"),
    ("Name or service not known", "host name not found"),
    ("nodename nor servname", "host name not found"),
    ("Temporary failure in name resolution", "host name not found (DNS)"),
    ("No route to host", "no route to host"),
    ("Network is unreachable", "network unreachable"),
    ("Connection reset", "connection reset"),
    ("RemoteDisconnected", "connection closed by the server"),
    ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted"),
    ("timed out", "timed out"),
    ("Read timed out", "timed out"),
)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen) or len(seen) > 20:
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__]
        # urllib3 keeps the root cause in .reason, requests in args[0]
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
        if isinstance(e, BaseExceptionGroup):
            # trio's "all attempts to connect failed" wraps the real errors in a group
            todo += list(e.exceptions)
    return seen


def network_reason(exc: BaseException) -> str:
    """A few words saying why a connection failed, for one-line messages."""
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, socket.gaierror):
            return "host name not found"
        if isinstance(e, ssl.SSLCertVerificationError):
            return "TLS certificate not trusted"
    text = " ".join(f"{type(e).__name__} {e}" for e in chain)
    for needle, reason in _TEXT_REASONS:
        if needle in text:
            return reason
    if any(isinstance(e, TimeoutError | socket.timeout) for e in chain):
        return "timed out"
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return "TLS failure"
    return "connection failed"
