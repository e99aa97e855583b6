"""Several processes on one mount at once.

The mount takes requests that are already queued without a trip through trio's scheduler
(storefs/fuse/request_wait.py). These tests pin what a user sees of that: concurrent
readers each get their own bytes, and an upload and `storefs status` complete while other
processes keep requests coming.  (Threads of one process leave the kernel's queue empty
now and then, so whether a worker that never finds it empty still lets the rest of the
mount run is pinned on a pipe, in tests/unit/test_request_wait.py.)
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mount.conftest import Mounted, make_mounted

MiB = 1 << 20
#: how long the hammering threads run at most; the test must finish well inside it
HAMMER_LIMIT = 60.0


@pytest.fixture
def file_mount(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mounted]:
    yield from make_mounted(request, tmp_path, "file")


def fuse_waits(m: Mounted) -> dict[str, int]:
    waits: dict[str, int] = m.status()["fuse_waits"]  # type: ignore[assignment]
    return waits


def test_concurrent_random_readers_each_get_their_bytes(file_mount: Mounted) -> None:
    m = file_mount
    data = random.randbytes(64 * MiB)
    path = m.path / "big.bin"
    path.write_bytes(data)
    before = fuse_waits(m)
    errors: list[str] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # reads reach the mount
            for _ in range(1500):
                off = rng.randrange(0, len(data) // 4096) * 4096
                got = os.pread(fd, 4096, off)
                if got != data[off:off + 4096]:
                    errors.append(f"reader {seed}: wrong bytes at {off}")
                    return
        finally:
            os.close(fd)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "readers hung"
    assert errors == []
    after = fuse_waits(m)
    # requests that four readers queued meanwhile are taken without a pass of trio's
    # scheduler; how many depends on how fast the readers run (368 in a loaded CI run,
    # over 1,000 when the machine is idle), so only that the path is taken is pinned
    # here, and its rules by tests/unit/test_request_wait.py
    assert after["queued"] > before["queued"], (before, after)


def test_an_upload_and_status_complete_while_requests_keep_coming(
        file_mount: Mounted) -> None:
    m = file_mount
    store = Path(m.target.source.removeprefix("file://"))
    target = m.path / "probe"
    target.write_bytes(b"")
    stop = threading.Event()
    deadline = time.monotonic() + HAMMER_LIMIT
    calls = [0] * 4

    def hammer(i: int) -> None:
        # getxattr is never cached by the kernel: every call is a request to the mount
        while not stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                os.getxattr(target, "user.absent")
            calls[i] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        while sum(calls) < 2000:  # requests are coming before the user's work starts
            time.sleep(0.01)
        before = fuse_waits(m)
        payload = random.randbytes(3 * MiB)
        (m.path / "written.bin").write_bytes(payload)  # uploads at close
        status = m.status()
        still_hammering = all(t.is_alive() for t in threads)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert still_hammering, "the upload and status waited for the hammering to end"
    assert (store / "written.bin").read_bytes() == payload
    assert status["pid"]
    after = fuse_waits(m)
    assert after["queued"] > before["queued"], (before, after)
