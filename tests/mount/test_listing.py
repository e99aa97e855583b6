"""Big directories: `ls -l` costs a paged listing, not a request per entry, and the kernel's
references are counted right (entries are freed after the kernel forgets them)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mount.conftest import Mounted, make_mounted


def requests(m: Mounted) -> dict[str, int]:
    counts: dict[str, int] = m.status()["requests"]["requests"]  # type: ignore[index]
    return dict(counts)


def operations(m: Mounted) -> dict[str, int]:
    """The filesystem operations the mount has answered, by name."""
    counts: dict[str, int] = m.status()["filesystem"]["operations"]  # type: ignore[index]
    return dict(counts)


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)
            if after.get(k, 0) != before.get(k, 0)}


@pytest.fixture(params=["mem", "file"])
def local_mount(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mounted]:
    yield from make_mounted(request, tmp_path, request.param)


def test_ls_l_of_10000_entries_is_one_paged_listing(tmp_path: Path) -> None:
    """file://, populated behind the mount's back, then listed cold."""
    from tests.mount.conftest import Mounted as M
    from tests.mount.conftest import storefs

    store = tmp_path / "store"
    big = store / "big"
    big.mkdir(parents=True)
    for i in range(10_000):
        (big / f"f{i:05d}").write_bytes(b"x" * (i % 7))
    mp = tmp_path / "mnt"
    mp.mkdir()
    from tests.mount._target import MountTarget

    # generous timeouts: the claim is about requests, not about how fast this machine is
    opts = {"file_page_size": "1000", "attr_timeout": "60", "dir_timeout": "60",
            "entry_timeout": "60"}
    m = M(MountTarget(f"file://{store}", opts), "ls", mp,
          tmp_path / "cache", tmp_path / "log")
    m.mount()
    try:
        before = requests(m)
        out = subprocess.run(["ls", "-l", str(mp / "big")], capture_output=True, text=True,
                             check=True, timeout=120).stdout
        assert len(out.splitlines()) == 10_001  # "total" + entries
        used = delta(requests(m), before)
        assert used.get("list", 0) <= math.ceil(10_000 / 1000) + 1, used
        assert used.get("head", 0) <= 2, used
        # warm: answered from the listing cache and the kernel, no listing again
        before = requests(m)
        subprocess.run(["ls", "-l", str(mp / "big")], capture_output=True, check=True)
        assert delta(requests(m), before).get("list", 0) == 0
    finally:
        assert storefs("umount", str(mp)).returncode == 0


@pytest.mark.mount_options(attr_timeout="60", dir_timeout="60", entry_timeout="60")
def test_flat_store_listing_and_forget(local_mount: Mounted) -> None:
    m = local_mount
    d = m.path / "d"
    d.mkdir()
    names = [f"n{i:04d}" for i in range(2000)]
    for n in names:
        with open(d / n, "wb"):
            pass
    before = requests(m)
    ops_before = operations(m)
    listed = os.listdir(d)
    assert sorted(listed) == names
    out = subprocess.run(["ls", "-l", str(d)], capture_output=True, text=True, check=True)
    assert len(out.stdout.splitlines()) == 2001
    used = delta(requests(m), before)
    assert used.get("head", 0) <= 2, used
    # GNU ls asks for the SELinux label and the ACL of the first entry only: "not
    # supported" is remembered for the device (ENODATA would cost two FUSE round trips
    # per entry, 4,000 here)
    assert delta(operations(m), ops_before).get("getxattr", 0) <= 4
    # the kernel drops its dentries: storefs frees the inodes (lookup counts add up)...
    many = m.status()["filesystem"]["inodes"]  # type: ignore[index]
    assert many >= 2000
    Path("/proc/sys/vm/drop_caches").write_text("2")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = m.status()["filesystem"]["inodes"]  # type: ignore[index]
        if left < 100:
            break
        Path("/proc/sys/vm/drop_caches").write_text("2")
        time.sleep(0.1)
    assert left < 100, f"{left} inodes still held after the kernel forgot them"
    # ...and everything is still reachable afterwards (no entry was freed too early)
    assert (d / "n1234").stat().st_size == 0
    assert sorted(os.listdir(d)) == names


#: the request a backend counts for a HEAD of one object
HEAD_REQUEST = {"s3-moto": "head_object", "swift": "head", "manta": "HEAD"}


@pytest.fixture(params=list(HEAD_REQUEST))
def remote_mount(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mounted]:
    yield from make_mounted(request, tmp_path, request.param)


def test_ls_l_after_remount_needs_no_head_per_entry(remote_mount: Mounted,
                                                     request: pytest.FixtureRequest) -> None:
    """Stores whose listings lack user metadata: what this mount wrote or saw before is
    recorded with its fingerprint, so a cold `ls -l` is the listing alone, with the right
    modes and mtimes."""
    m = remote_mount
    d = m.path / "d"
    d.mkdir()
    for i in range(150):
        (d / f"f{i:03d}").write_bytes(b"x" * i)
    os.chmod(d / "f007", 0o600)
    os.utime(d / "f008", ns=(1_000_000_000 * 10**9, 1_000_000_000 * 10**9))
    m.remount()
    head = HEAD_REQUEST[request.node.callspec.params["remote_mount"]]
    before = requests(m)
    out = subprocess.run(["ls", "-l", "--time-style=+%s", str(d)], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    used = delta(requests(m), before)
    assert len(out) == 151
    assert used.get(head, 0) <= 5, used
    lines = {ln.split()[-1]: ln.split() for ln in out[1:]}
    assert lines["f007"][0] == "-rw-------"
    assert lines["f008"][5] == "1000000000"
    assert lines["f123"][4] == "123"


@pytest.mark.mount_options(attr_timeout="0.1")  # the listing outlives the attribute TTL
def test_cold_ls_l_with_an_empty_cache_is_one_head_per_entry(
        remote_mount: Mounted, request: pytest.FixtureRequest) -> None:
    """Nothing recorded (a new cache directory): `ls -l` lists the directory once and
    fetches each entry's attributes once, in parallel: no second HEAD when the kernel's
    stat comes after the prefetch, no listing of a would-be directory per file name."""
    m = remote_mount
    d = m.path / "d"
    d.mkdir()
    for i in range(300):
        (d / f"f{i:03d}").write_bytes(b"y")
    os.chmod(d / "f042", 0o640)
    m.umount()
    shutil.rmtree(m.cache_dir)
    m.mount()
    head = HEAD_REQUEST[request.node.callspec.params["remote_mount"]]
    before = requests(m)
    out = subprocess.run(["ls", "-l", str(d)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    used = delta(requests(m), before)
    assert len(out) == 301
    assert 300 <= used.get(head, 0) <= 305, used
    assert sum(n for op, n in used.items() if op != head) <= 6, used
    assert next(ln for ln in out if ln.endswith(" f042")).startswith("-rw-r-----")
