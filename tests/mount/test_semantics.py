"""The deviations docs/SEMANTICS.md states, pinned on real mounts."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from storefs.backends._renameat2 import RENAME_EXCHANGE, renameat2
from tests.mount.conftest import Mounted, make_mounted


def test_special_files_are_refused(mounted: Mounted) -> None:
    with pytest.raises(OSError) as exc:
        os.mkfifo(mounted.path / "fifo")
    assert exc.value.errno == errno.EPERM
    assert os.listdir(mounted.path) == []


def test_rename_exchange(mounted: Mounted) -> None:
    a, b = mounted.path / "a", mounted.path / "b"
    a.write_text("A")
    b.write_text("B")
    renameat2(a, b, RENAME_EXCHANGE)
    assert (a.read_text(), b.read_text()) == ("B", "A")
    (mounted.path / "d1").mkdir()
    (mounted.path / "d2").mkdir()
    (mounted.path / "d1" / "in1").write_text("1")
    if mounted.source.startswith("file://"):
        renameat2(mounted.path / "d1", mounted.path / "d2", RENAME_EXCHANGE)
        assert os.listdir(mounted.path / "d2") == ["in1"]
    else:
        with pytest.raises(OSError) as exc:
            renameat2(mounted.path / "d1", mounted.path / "d2", RENAME_EXCHANGE)
        assert exc.value.errno == errno.EINVAL
        assert os.listdir(mounted.path / "d1") == ["in1"]
    assert sorted(os.listdir(mounted.path)) == ["a", "b", "d1", "d2"]


def test_atime_is_not_updated_by_reads(mounted: Mounted) -> None:
    p = mounted.path / "f"
    p.write_text("x")
    os.utime(p, ns=(1_000_000_000_000_000_000, 1_100_000_000_000_000_000))
    assert p.read_text() == "x"
    st = os.stat(p)
    assert st.st_atime_ns == 1_000_000_000_000_000_000
    assert st.st_mtime_ns == 1_100_000_000_000_000_000


def test_link_counts(mounted: Mounted) -> None:
    (mounted.path / "d" / "sub").mkdir(parents=True)
    (mounted.path / "f").write_text("x")
    assert os.stat(mounted.path / "f").st_nlink == 1
    assert os.stat(mounted.path / "d").st_nlink == 2


def test_xattr_limits_and_facts(mounted: Mounted) -> None:
    p = mounted.path / "f"
    p.write_text("x")
    with pytest.raises(OSError) as exc:
        os.setxattr(p, "user.huge", b"v" * 20_000)
    assert exc.value.errno == errno.E2BIG
    assert "user.huge" not in os.listxattr(p)
    with pytest.raises(OSError) as exc:
        os.setxattr(p, "trusted.x", b"1")
    assert exc.value.errno in (errno.EOPNOTSUPP, errno.EPERM)
    for name in ("security.selinux", "system.posix_acl_access", "trusted.x"):
        # not kept at all: "not supported", which ls and cp remember per device
        with pytest.raises(OSError) as exc:
            os.getxattr(p, name)
        assert exc.value.errno == errno.EOPNOTSUPP, name
    with pytest.raises(OSError) as exc:
        os.getxattr(p, "user.absent")
    assert exc.value.errno == errno.ENODATA
    etag = os.getxattr(p, "user.storefs.etag")
    assert etag
    with pytest.raises(OSError) as exc:
        os.setxattr(p, "user.storefs.etag", b"forged")
    assert exc.value.errno == errno.EPERM
    assert os.getxattr(p, "user.storefs.etag") == etag
    assert p.read_text() == "x"


def test_names_the_store_refuses(mounted: Mounted) -> None:
    with pytest.raises(OSError) as exc:
        (mounted.path / ("n" * 256)).write_text("x")
    assert exc.value.errno == errno.ENAMETOOLONG
    if not mounted.source.startswith("file://"):
        with pytest.raises(OSError) as exc:
            os.open(os.fsencode(mounted.path) + b"/bad-\xff-utf8", os.O_CREAT | os.O_WRONLY)
        assert exc.value.errno == errno.EINVAL
    assert os.listdir(mounted.path) == []


@pytest.fixture
def tiny_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mounted]:
    """A mem:// mount whose cache directory is a 4 MiB tmpfs: a full cache disk."""
    cache = tmp_path / "cache"
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(cache)], check=True)
    try:
        yield from make_mounted(request, tmp_path, "mem")
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)


def test_a_full_cache_disk_fails_writes_cleanly(tiny_cache: Mounted) -> None:
    m = tiny_cache
    (m.path / "small").write_bytes(b"fits")
    chunk = b"z" * (256 * 1024)
    written = 0
    with pytest.raises(OSError) as exc, open(m.path / "big", "wb") as f:
        for _ in range(64):
            written += f.write(chunk)
            f.flush()
    assert exc.value.errno == errno.ENOSPC
    assert written < 64 * len(chunk)
    os.unlink(m.path / "big")
    # the mount is fine: what was stored is intact and new writes work again
    assert (m.path / "small").read_bytes() == b"fits"
    (m.path / "after").write_bytes(b"ok")
    assert (m.path / "after").read_bytes() == b"ok"
    assert stat.S_ISREG(os.stat(m.path / "after").st_mode)
