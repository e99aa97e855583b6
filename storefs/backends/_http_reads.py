"""Bigger socket reads for the httpx clients (Manta, HTTP).

httpcore reads a response body 64 KiB per ``recv``, and each of those chunks then takes a
path through httpcore, h11 and trio that costs more CPU than the bytes do.  Measured on
the 2-core VM, 8 MiB Manta range reads of a 256 MiB object: 0.85-1.1 s of user CPU and
190-270 MB/s at 64 KiB, 0.35 s and 460-565 MB/s at 1 MiB.  A ``recv`` returns what the
socket holds, so small responses are not delayed; the buffer is allocated per call and
trimmed to what arrived.

httpcore has no per-client setting for it: the size is its connection class's
``READ_NUM_BYTES``, raised here for every async connection of the process.
"""

from __future__ import annotations

import httpcore

#: bytes asked of the socket per read of a response
READ_SIZE = 1 << 20


def use_large_reads() -> None:
    """Raise httpcore's read size (idempotent; call before the first request).  An
    httpcore without the attribute is left alone (reads stay at its own size)."""
    current = getattr(httpcore.AsyncHTTP11Connection, "READ_NUM_BYTES", None)
    if isinstance(current, int) and current < READ_SIZE:
        httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = READ_SIZE
