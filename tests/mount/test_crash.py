"""Nothing acknowledged is lost when the daemon is killed with SIGKILL in the middle of a
write: the next mount shows the data and finishes the upload."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import textwrap
import time

from tests.mount.conftest import Mounted

BLOCK = 256 * 1024

WRITER = textwrap.dedent("""
    import os, random, sys
    path, total, block = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = random.Random(7).randbytes(total)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    done = 0
    try:
        while done < total:
            n = os.write(fd, data[done:done + block])
            done += n
            print(done, flush=True)   # acknowledged: write() returned
    except OSError as exc:
        print("error", exc.errno, flush=True)
""")


def test_kill9_during_a_write_loses_nothing_acknowledged(mounted: Mounted) -> None:
    mounted.needs("persistence")
    total = 64 * 1024 * 1024
    target = mounted.path / "big.bin"
    with subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(total), str(BLOCK)],
                          stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdout is not None
        acked = 0
        # let it get well past the first parts (streamed uploads in flight), then kill
        for line in writer.stdout:
            acked = int(line)
            if acked >= 12 * 1024 * 1024:
                break
        mounted.kill9()
        rest = writer.stdout.read().split()
        writer.wait(timeout=60)
    numbers = [int(x) for x in rest if x.isdigit() and int(x) > 1000]
    if numbers:
        acked = max(acked, max(numbers))
    assert acked < total, "the writer finished before the kill: nothing was tested"
    expected = random.Random(7).randbytes(total)[:acked]

    mounted.mount()  # recovery: the journal is replayed
    got = target.read_bytes()
    assert len(got) >= acked
    assert got[:acked] == expected, "acknowledged bytes differ after the crash"
    # the recovered upload completes; then a fresh mount reads it from the store
    deadline = time.monotonic() + 120
    while mounted.status().get("pending") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not mounted.status().get("pending"), mounted.status().get("pending")
    mounted.remount()
    assert target.read_bytes()[:acked] == expected


def test_kill9_after_close_and_after_fsync(mounted: Mounted) -> None:
    mounted.needs("persistence")
    closed = mounted.path / "closed.txt"
    closed.write_bytes(b"closed before the crash\n")
    fd = os.open(mounted.path / "synced.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"fsynced, still open\n")
    os.fsync(fd)
    mounted.kill9()
    with contextlib.suppress(OSError):
        os.close(fd)  # the mount is gone: ENOTCONN
    mounted.mount()
    assert closed.read_bytes() == b"closed before the crash\n"
    assert (mounted.path / "synced.txt").read_bytes() == b"fsynced, still open\n"
