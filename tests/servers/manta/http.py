"""Request bodies and the stats counter of the test server (HTTP plumbing, no Manta logic)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any, BinaryIO

from tests.servers.manta.errors import MantaError

CHUNK = 1 << 20


class Body:
    """A request body read in 1 MiB pieces, by ``Content-Length`` or chunked coding."""

    def __init__(self, rfile: BinaryIO, headers: dict[str, str]) -> None:
        self.rfile = rfile
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.length: int | None = None
        self.remaining = 0
        if not self.chunked and "content-length" in headers:
            try:
                self.length = int(headers["content-length"])
            except ValueError as exc:
                raise MantaError("BadRequest", "Content-Length invalid") from exc
            if self.length < 0:
                raise MantaError("ContentLengthRequired", "Content-Length must be >= 0")
            self.remaining = self.length
        self.done = not self.chunked and self.remaining == 0
        self.received = 0

    @property
    def present(self) -> bool:
        """Whether the request announced a body at all (length or chunked)."""
        return self.chunked or self.length is not None

    def chunks(self) -> Iterator[bytes | memoryview]:
        """The body's bytes; each piece is valid until the next one is asked for."""
        if self.done:
            return
        if self.chunked:
            yield from self._chunked()
            return
        buf = memoryview(bytearray(CHUNK))
        while self.remaining:
            n = self.rfile.readinto(buf[:min(self.remaining, CHUNK)])  # type: ignore[attr-defined]
            if not n:
                raise ConnectionError("client went away mid-body")
            self.remaining -= n
            self.received += n
            yield buf[:n]
        self.done = True

    def _chunked(self) -> Iterator[bytes]:
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError as exc:
                raise ConnectionError("bad chunk header") from exc
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self.done = True
                return
            left = size
            while left:
                data = self.rfile.read(min(left, CHUNK))
                if not data:
                    raise ConnectionError("client went away mid-chunk")
                left -= len(data)
                self.received += len(data)
                yield data
            self.rfile.readline(8)

    def read_all(self, cap: int = CHUNK) -> bytes:
        """A small body (JSON requests), refused past ``cap`` bytes."""
        out = bytearray()
        for piece in self.chunks():
            out += piece
            if len(out) > cap:
                raise MantaError("BadRequest", "request body too large")
        return bytes(out)

    def drain(self, cap: int) -> bool:
        """Read and drop what is left, up to ``cap`` bytes; False when more remains (then
        the connection must close instead)."""
        if self.done:
            return True
        if not self.chunked and self.remaining > cap:
            return False
        try:
            for _ in self.chunks():
                if self.received > cap:
                    return False
        except ConnectionError:
            return False
        return True


class Stats:
    """Request counts by operation and path, for tests (``GET /_admin/stats?prefix=``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[tuple[str, str, int, int]] = []

    def add(self, op: str, path: str, bytes_in: int, bytes_out: int) -> int:
        """Record one request; returns its index for ``update``."""
        with self.lock:
            self.records.append((op, path, bytes_in, bytes_out))
            return len(self.records) - 1

    def update(self, index: int, bytes_in: int, bytes_out: int) -> None:
        """The final byte counts of a request recorded when its reply began."""
        with self.lock:
            op, path, _, _ = self.records[index]
            self.records[index] = (op, path, bytes_in, bytes_out)

    def summary(self, prefix: str) -> dict[str, Any]:
        ops: Counter[str] = Counter()
        bytes_in = bytes_out = 0
        with self.lock:
            records = list(self.records)
        for op, path, bin_, bout in records:
            if path == prefix.rstrip("/") or path.startswith(prefix):
                ops[op] += 1
                bytes_in += bin_
                bytes_out += bout
        return {"ops": dict(ops), "bytes_in": bytes_in, "bytes_out": bytes_out,
                "requests": sum(ops.values())}
