"""The daemon tunes glibc's malloc for its peak RSS: worker threads share two arenas
instead of one each, and freed upload parts and read-ahead runs go back to the kernel
instead of staying in the heap."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys, threading
from storefs.mount import tune_malloc
if sys.argv[1] == "limit":
    tune_malloc()
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


PARTS = """
import sys
from storefs.mount import tune_malloc
if sys.argv[1] == "tune":
    tune_malloc()
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
size = 16 << 20
small = []
before = anon()
for _ in range(8):  # the parts of an upload: filled, sent, freed, small objects between
    part = bytearray(size)
    part[::4096] = b"x" * (size // 4096)
    small.append(bytearray(64))
    del part
print((anon() - before) >> 20)
"""


def kept_mib(mode: str) -> int:
    proc = subprocess.run([sys.executable, "-c", PARTS, mode], capture_output=True, text=True,
                          check=True, env={**{k: v for k, v in os.environ.items()
                                              if not k.startswith("MALLOC_")}})
    return int(proc.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mmap threshold")
def test_freed_parts_go_back_to_the_kernel() -> None:
    assert kept_mib("none") >= 8  # glibc's default: its threshold grows, parts stay in the heap
    assert kept_mib("tune") < 4



BUFFERS = """
import ctypes, resource, sys
from storefs.mount import tune_malloc
tune_malloc()
if sys.argv[1] == "trim-128k":  # glibc's default trim threshold
    ctypes.CDLL(None).mallopt(-1, 128 * 1024)
keep = []
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):  # a FUSE write's 1 MiB buffer and a copy of it (a body piece), freed
    buf = bytes(1 << 20)
    piece = bytearray(buf)
    keep.append(bytearray(8))
    del buf, piece
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    proc = subprocess.run([sys.executable, "-c", BUFFERS, mode], capture_output=True,
                          text=True, check=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")})
    return int(proc.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's trim threshold")
def test_a_freed_write_buffer_is_reused_not_faulted_in_again() -> None:
    # at glibc's 128 KiB trim threshold a freed 1 MiB buffer at the top of the heap goes
    # back to the kernel, and the next one faults its 256 pages in again
    untuned = page_faults("trim-128k")
    assert untuned > 200 * 200
    assert page_faults("tune") < untuned / 20
