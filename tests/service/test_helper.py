"""mount(8) with storefs' helper: ``mount -t storefs``, fstab lines, options, refusals."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from tests.service.conftest import (
    NOBODY,
    STRANGER,
    as_user,
    daemon_pid,
    is_mounted,
    one_line_error,
    process_gone,
    run,
    stat_mode,
    wait_for,
)

pytestmark = pytest.mark.mount


def make_store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    (store / "sub").mkdir(parents=True)
    (store / "hello.txt").write_text("hello\n")
    return store


def mountpoint(tmp_path: Path, mounts: list[Path], name: str = "mnt") -> Path:
    mp = tmp_path / name
    mp.mkdir()
    mounts.append(mp)
    return mp


def mount_table_entry(mp: Path) -> tuple[str, str, list[str], list[str]]:
    """(source, type, mount options, super options) of the mount on ``mp``."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if fields[4] == str(mp):
            fstype, source, superopts = right.split()
            return source, fstype, fields[5].split(","), superopts.split(",")
    raise AssertionError(f"{mp} is not mounted")


def test_mount_t_storefs_honours_ro_uid_gid_umask_and_allow_other(
        tmp_path: Path, public_dir: Path, mounts: list[Path]) -> None:
    store = make_store(tmp_path)
    mp = mountpoint(public_dir, mounts)
    proc = run("mount", "-t", "storefs", f"file://{store}", str(mp), "-o",
               f"ro,allow_other,uid=nobody,gid=nogroup,umask=027,_netdev,nofail,"
               f"cache_dir={tmp_path / 'cache'}")
    assert proc.returncode == 0, proc.stderr
    # live as soon as mount(8) returns
    source, fstype, opts, superopts = mount_table_entry(mp)
    assert (source, fstype) == (f"file://{store}", "fuse.storefs")
    assert "ro" in opts and "allow_other" in superopts
    st = os.stat(mp / "hello.txt")
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert stat_mode(mp / "hello.txt") == 0o640 and stat_mode(mp / "sub") == 0o750
    # the owner may read; others are kept out by the umask; nobody may write
    assert as_user(NOBODY, "cat", str(mp / "hello.txt")).stdout == "hello\n"
    denied = as_user(STRANGER, "cat", str(mp / "hello.txt"))
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    with pytest.raises(OSError) as exc:
        (mp / "new.txt").write_text("x")
    assert exc.value.errno == errno.EROFS
    written = as_user(NOBODY, "sh", "-c", f"echo x > {mp}/sub/new.txt")
    assert written.returncode != 0 and "Read-only file system" in written.stderr
    # umount(8) runs umount.fuse.storefs: storefs umount, then the mount is gone
    proc = run("umount", str(mp))
    assert proc.returncode == 0, proc.stderr
    assert not is_mounted(mp)
    assert sorted(p.name for p in store.iterdir()) == ["hello.txt", "sub"]


def test_without_allow_other_only_the_owner_gets_in(tmp_path: Path, public_dir: Path,
                                                    mounts: list[Path]) -> None:
    store = make_store(tmp_path)
    mp = mountpoint(public_dir, mounts)
    proc = run("mount", "-t", "storefs", f"file://{store}", str(mp), "-o",
               f"cache_dir={tmp_path / 'cache'}")
    assert proc.returncode == 0, proc.stderr
    listing = as_user(NOBODY, "ls", str(mp))
    assert listing.returncode != 0 and "Permission denied" in listing.stderr
    (mp / "by-root.txt").write_text("rw\n")
    assert run("umount", str(mp)).returncode == 0
    assert (store / "by-root.txt").read_text() == "rw\n"


def test_fstab_lines_with_mount_a_and_mount_dir(tmp_path: Path, mounts: list[Path]) -> None:
    store = make_store(tmp_path)
    auto = mountpoint(tmp_path, mounts, "auto")
    manual = mountpoint(tmp_path, mounts, "manual")
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# a scratch fstab, as /etc/fstab would have it\n"
        f"file://{store} {auto} storefs _netdev,nofail,x-systemd.automount,"
        f"x-systemd.idle-timeout=10min,comment=test,defaults,uid=1000,gid=1000,"
        f"cache_dir={tmp_path / 'cache1'} 0 0\n"
        f"mem://fstab-{os.getpid()} {manual} fuse.storefs noauto,users,ro,"
        f"cache_dir={tmp_path / 'cache2'} 0 0\n")
    proc = run("mount", "-a", "-T", str(fstab))
    assert proc.returncode == 0, proc.stderr
    assert is_mounted(auto) and not is_mounted(manual)  # noauto: not by mount -a
    assert os.stat(auto / "hello.txt").st_uid == 1000
    assert (auto / "hello.txt").read_text() == "hello\n"
    # mount -a again: nothing to do
    assert run("mount", "-a", "-T", str(fstab)).returncode == 0
    # the noauto line, by its directory, with type fuse.storefs (mount.fuse.storefs)
    proc = run("mount", "-T", str(fstab), str(manual))
    assert proc.returncode == 0, proc.stderr
    assert mount_table_entry(manual)[1] == "fuse.storefs"
    assert "ro" in mount_table_entry(manual)[2]
    with pytest.raises(OSError) as exc:
        (manual / "x").write_text("x")
    assert exc.value.errno == errno.EROFS
    for mp in (auto, manual):
        assert run("umount", str(mp)).returncode == 0
        assert not is_mounted(mp)


@pytest.mark.parametrize(("options", "message"), [
    ("allow_other,bogus_opt=1", "storefs: unknown option 'bogus_opt' for mem: mounts"),
    ("alow_other", "storefs: unknown option 'alow_other' for mem: mounts "
                   "(did you mean allow_other?)"),
    ("umask=abc", "storefs: umask='abc': expected an octal mode such as 022"),
    ("uid=no-such-user-here", "mount.storefs: uid=no-such-user-here: no such user"),
    ("setuid=no-such-user-here", "mount.storefs: setuid=no-such-user-here: no such user"),
])
def test_bad_options_are_refused_in_one_line(tmp_path: Path, mounts: list[Path], options: str,
                                             message: str) -> None:
    mp = mountpoint(tmp_path, mounts)
    proc = run("mount", "-t", "storefs", "mem://refused", str(mp), "-o", options)
    assert one_line_error(proc, message)
    assert not is_mounted(mp)


def test_unknown_option_in_fstab_is_refused(tmp_path: Path, mounts: list[Path]) -> None:
    mp = mountpoint(tmp_path, mounts)
    fstab = tmp_path / "fstab"
    fstab.write_text(f"file://{make_store(tmp_path)} {mp} storefs _netdev,cache_sise=1G 0 0\n")
    proc = run("mount", "-T", str(fstab), str(mp))
    one_line_error(proc, "storefs: unknown option 'cache_sise' for file: mounts "
                         "(did you mean cache_size?)")
    assert not is_mounted(mp)


def test_secrets_are_refused_as_mount_options(tmp_path: Path, mounts: list[Path]) -> None:
    mp = mountpoint(tmp_path, mounts)
    proc = run("mount", "-t", "storefs", "s3://bucket", str(mp), "-o",
               "endpoint=http://127.0.0.1:9,secret_key=hunter2-not-here")
    line = one_line_error(proc, "mount.storefs: option secret_key holds a secret")
    assert "credfile=" in line and "hunter2" not in proc.stderr
    assert not is_mounted(mp)


def test_fake_verbose_and_sloppy_flags(tmp_path: Path, mounts: list[Path]) -> None:
    mp = mountpoint(tmp_path, mounts)
    # -f: everything checked, nothing mounted; -v: what would run
    proc = run("mount", "-f", "-v", "-t", "storefs", "mem://fake", str(mp), "-o",
               "_netdev,allow_other")
    assert proc.returncode == 0, proc.stderr
    assert not is_mounted(mp)
    assert f"-m storefs mount mem://fake {mp} -o rw,allow_other" in proc.stderr
    assert "dropped: _netdev" in proc.stderr
    # a fake mount still refuses what a real one would
    refused = run("mount", "-f", "-t", "storefs", "mem://fake", str(mp), "-o", "umask=9")
    one_line_error(refused, "mount.storefs: umask='9': expected an octal mode such as 022")
    refused = run("mount", "-f", "-t", "storefs", "mem://fake", str(mp), "-o", "alow_other")
    one_line_error(refused, "mount.storefs: unknown option 'alow_other' for mem: mounts "
                            "(did you mean allow_other?)")
    # -s: unknown options are dropped instead of refused
    proc = run("mount", "-s", "-t", "storefs", "mem://sloppy", str(mp), "-o",
               f"bogus,cache_dir={tmp_path / 'cache'}")
    assert proc.returncode == 0, proc.stderr
    assert is_mounted(mp)
    assert run("umount", str(mp)).returncode == 0


def test_a_dead_mount_is_named_and_umount_clears_it(tmp_path: Path, mounts: list[Path]) -> None:
    store = make_store(tmp_path)
    mp = mountpoint(tmp_path, mounts)
    args = ["mount", "-t", "storefs", f"file://{store}", str(mp), "-o",
            f"cache_dir={tmp_path / 'cache'}"]
    assert run(*args).returncode == 0
    pid = daemon_pid(mp)
    f = open(mp / "unsaved.txt", "w")  # noqa: SIM115 - open across the crash
    f.write("written, never closed\n")
    f.flush()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: process_gone(pid), 30, "the daemon to die")
    with pytest.raises(OSError) as exc:
        f.close()
    with pytest.raises(OSError) as exc:
        os.listdir(mp)
    assert exc.value.errno == errno.ENOTCONN  # "Transport endpoint is not connected"
    again = run(*args)
    one_line_error(again, f"mount.storefs: {mp}: Transport endpoint is not connected: the "
                          "daemon of an earlier mount there has died; run 'umount")
    cleared = run("umount", str(mp))
    assert cleared.returncode == 0, cleared.stderr
    assert not is_mounted(mp)
    # the next mount finishes what the dead one had accepted
    assert run(*args).returncode == 0
    assert (mp / "unsaved.txt").read_text() == "written, never closed\n"
    assert run("umount", str(mp)).returncode == 0
    assert (store / "unsaved.txt").read_text() == "written, never closed\n"
