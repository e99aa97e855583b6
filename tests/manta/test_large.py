"""A 1 GiB object through the Manta backend: equal MD5 back, memory bounded on both ends."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio

from storefs.backends.base import GiB, MiB
from tests.manta.conftest import MakeBackend
from tests.servers.fixture_manta import MantaServer

SIZE = 1 * GiB


def rss(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def block(n: int, size: int) -> bytes:
    """Part ``n`` of the test object: cheap, deterministic, not compressible by accident."""
    seed = hashlib.sha256(n.to_bytes(8, "big")).digest()
    assert size % len(seed) == 0
    return seed * (size // len(seed))


@pytest.mark.slow
@pytest.mark.parametrize("uploads", ["stream", "multipart"])
async def test_one_gib_round_trip_in_bounded_memory(make_backend: MakeBackend,
                                                    manta_server: MantaServer,
                                                    stor: str, uploads: str) -> None:
    peaks = {"client": 0, "server": 0}

    async def watch() -> None:
        while True:
            peaks["client"] = max(peaks["client"], rss())
            peaks["server"] = max(peaks["server"], rss(manta_server.pid))
            await trio.sleep(0.02)

    async with make_backend(stor, manta_server.options(uploads=uploads)) as b:
        part = b.capabilities.part_size
        # one PUT takes its parts in order; a multipart upload, several at once
        assert b.capabilities.sequential_parts == (uploads == "stream")
        base_client, base_server = rss(), rss(manta_server.pid)
        written = hashlib.md5()
        async with trio.open_nursery() as watcher:
            watcher.start_soon(watch)
            up = await b.begin_upload("big.bin", {"mode": "33188"}, part_size=part)
            limiter = trio.CapacityLimiter(2)

            async def send(n: int) -> None:
                async with limiter:
                    await up.write_part(n, block(n, part))

            if uploads == "stream":
                for n in range(1, SIZE // part + 1):
                    await up.write_part(n, block(n, part))
            else:
                async with trio.open_nursery() as nursery:
                    for n in range(1, SIZE // part + 1):
                        nursery.start_soon(send, n)
            for n in range(1, SIZE // part + 1):
                written.update(block(n, part))
            meta = await up.complete()
            assert meta.size == SIZE
            read = hashlib.md5()
            offset = 0
            while offset < SIZE:
                data = await b.get_range("big.bin", offset, offset + 8 * MiB,
                                         if_match=meta.etag)
                read.update(data)
                offset += len(data)
            watcher.cancel_scope.cancel()
        assert offset == SIZE
        assert read.hexdigest() == written.hexdigest()
        assert (await b.head("big.bin")).checksums["md5"] == meta.checksums["md5"]
    # two 64 MiB parts in flight and one being hashed by the test, never the object
    assert peaks["client"] - base_client < 300 * MiB, peaks
    # the server streams to and from disk
    assert peaks["server"] - base_server < 100 * MiB, peaks
