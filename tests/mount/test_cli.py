"""Bad input to the command line: one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.mount.conftest import is_mounted, storefs


def one_line_error(proc: object, *needles: str) -> str:
    rc = getattr(proc, "returncode")  # noqa: B009 - CompletedProcess
    err = getattr(proc, "stderr")  # noqa: B009
    assert rc != 0, f"expected a failure, got rc 0: {err}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert lines[0].startswith("storefs: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.mark.parametrize(("source", "needle"), [
    ("s3:/bucket", "s3://NAME"),
    ("foo://bar", "expected one of"),
    ("", "malformed source"),
    ("file://relative/path", "absolute path"),
    ("manta:/jill/nowhere", "manta:/LOGIN/stor"),
    ("s3://bad_bucket!/x", "invalid bucket name"),
    ("file:///a/../b", "'..'"),
])
def test_malformed_source(tmp_path: Path, source: str, needle: str) -> None:
    one_line_error(storefs("mount", source, str(tmp_path)), needle)


def test_missing_and_non_directory_mountpoint(tmp_path: Path) -> None:
    one_line_error(storefs("mount", "mem://x", str(tmp_path / "nope")), "does not exist")
    f = tmp_path / "file"
    f.write_text("x")
    one_line_error(storefs("mount", "mem://x", str(f)), "not a directory")


def test_busy_mountpoint(tmp_path: Path) -> None:
    mp = tmp_path / "mnt"
    mp.mkdir()
    ok = storefs("mount", "mem://busy", str(mp), "--cache-dir", str(tmp_path / "c"))
    assert ok.returncode == 0, ok.stderr
    try:
        one_line_error(storefs("mount", "mem://other", str(mp), "--cache-dir",
                               str(tmp_path / "c2")), "already a mount point")
    finally:
        assert storefs("umount", str(mp)).returncode == 0
    assert not is_mounted(mp)


@pytest.mark.parametrize(("option", "needle"), [
    ("atr_timeout=1", "did you mean attr_timeout"),
    ("no_such_thing", "unknown option 'no_such_thing'"),
    ("attr_timeout=soon", "expected a number"),
    ("cache_size=lots", "expected a size"),
    ("umask=999", "octal"),
    ("uid", "needs a value"),
])
def test_bad_options(tmp_path: Path, option: str, needle: str) -> None:
    one_line_error(storefs("mount", "mem://x", str(tmp_path), "-o", option), needle)
    assert not is_mounted(tmp_path)


def test_unusable_cache_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(storefs("mount", "mem://x", str(tmp_path), "--cache-dir",
                           str(blocker / "cache")), "cache directory", "not a directory")
    # a directory nobody can create entries in (even root): refused, and nothing mounted
    one_line_error(storefs("mount", "mem://x", str(tmp_path), "--cache-dir",
                           "/proc/storefs-cache"), "cache directory")
    assert not is_mounted(tmp_path)


def test_file_store_that_does_not_exist(tmp_path: Path) -> None:
    mp = tmp_path / "mnt"
    mp.mkdir()
    one_line_error(storefs("mount", f"file://{tmp_path}/missing", str(mp),
                           "--cache-dir", str(tmp_path / "c")), "is not a directory")
    assert not is_mounted(mp)


def test_umount_of_something_not_mounted(tmp_path: Path) -> None:
    one_line_error(storefs("umount", str(tmp_path)), "is not mounted")


def test_version_help_and_python_m() -> None:
    from storefs import __version__

    proc = storefs("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"storefs {__version__}"
    proc = storefs("--help")
    assert proc.returncode == 0 and "mount" in proc.stdout and "umount" in proc.stdout
    proc = storefs("mount", "--help")
    assert proc.returncode == 0 and "-o OPT" in proc.stdout
    proc = storefs("options", "mem://x")
    assert proc.returncode == 0 and "attr_timeout" in proc.stdout and "mem_page_size" in proc.stdout


def test_status_without_mounts_or_with_one(tmp_path: Path) -> None:
    mp = tmp_path / "mnt"
    mp.mkdir()
    assert storefs("mount", "mem://st", str(mp), "--cache-dir", str(tmp_path / "c")).returncode == 0
    try:
        (mp / "f").write_text("x")
        proc = storefs("status", str(mp))
        assert proc.returncode == 0
        assert f"mem://st on {os.path.realpath(mp)}" in proc.stdout
        assert "pending uploads: 0" in proc.stdout
    finally:
        assert storefs("umount", str(mp)).returncode == 0


def test_dead_mount_is_named_and_cleared(tmp_path: Path) -> None:
    import signal

    from storefs.control import request

    mp = tmp_path / "mnt"
    mp.mkdir()
    ok = storefs("mount", "mem://dead", str(mp), "--cache-dir", str(tmp_path / "c"))
    assert ok.returncode == 0, ok.stderr
    pid = request(mp, {"cmd": "status"}, timeout=10)["status"]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10  # not our child: poll until it is gone
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    one_line_error(storefs("mount", "mem://again", str(mp), "--cache-dir", str(tmp_path / "c")),
                   "dead mount", "storefs umount")
    proc = storefs("umount", str(mp))
    assert proc.returncode == 0, proc.stderr
    assert not is_mounted(mp)
