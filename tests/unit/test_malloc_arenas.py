"""The daemon caps glibc's malloc arenas: worker threads share two instead of one each,
which keeps freed buffers from piling up per thread (the mount's peak RSS)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys, threading
from storefs.mount import limit_malloc_arenas
if sys.argv[1] == "limit":
    limit_malloc_arenas()
alive = threading.Barrier(8)
def work():
    blocks = [bytearray(4096) for _ in range(2000)]
    alive.wait()  # all threads at once, as a mount's workers are
    del blocks
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()
"""


def arenas(mode: str, **env: str) -> int:
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                          text=True, check=True,
                          env={**{k: v for k, v in os.environ.items()
                                  if k != "MALLOC_ARENA_MAX"}, **env})
    return sum(1 for line in proc.stderr.splitlines() if line.startswith("Arena "))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc arenas")
def test_threads_share_at_most_two_arenas_unless_the_user_says_otherwise() -> None:
    assert arenas("none") > 2  # the default: an arena per thread, up to 8 per core
    assert arenas("limit") <= 2
    assert arenas("limit", MALLOC_ARENA_MAX="4") > 2  # the user's setting is kept
