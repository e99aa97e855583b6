"""``-o setuid=USER``: the daemon runs as USER, with USER's groups and home, not root's."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.conftest import (
    as_user,
    is_mounted,
    one_line_error,
    process_gone,
    run,
    usable_by,
    wait_for,
)

pytestmark = pytest.mark.mount


def proc_status(pid: int) -> dict[str, list[str]]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.split() for k, _, v in (line.partition(":") for line in lines)}


def as_service_user(user: pwd.struct_passwd, *cmd: str, runtime: str = "") -> list[str]:
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
            "env", f"HOME={user.pw_dir}", f"USER={user.pw_name}", f"XDG_RUNTIME_DIR={runtime}",
            *cmd]


@contextlib.contextmanager
def logged_in(user: pwd.struct_passwd) -> Iterator[Path]:
    """``/run/user/UID``, as logind makes it when the user logs in."""
    runtime = Path(f"/run/user/{user.pw_uid}")
    made = not runtime.exists()
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(runtime, user.pw_uid, user.pw_gid)
    try:
        yield runtime
    finally:
        if made:
            shutil.rmtree(runtime, ignore_errors=True)


def test_setuid_runs_the_daemon_as_that_user(
        service_user: pwd.struct_passwd, user_dir: Path, tmp_path: Path,
        tmp_path_factory: pytest.TempPathFactory, mounts: list[Path]) -> None:
    user = service_user
    store, mp = user_dir / "store", user_dir / "mnt"
    for d in (store, mp):
        d.mkdir()
        os.chown(d, user.pw_uid, user.pw_gid)
    mounts.append(mp)
    token = f"tok-{uuid.uuid4().hex}"
    credfile = tmp_path / "svc.env"  # root's, 0600: the user could not read it
    credfile.write_text(f"STOREFS_TEST_TOKEN={token}\n")
    credfile.chmod(0o600)
    with usable_by(user.pw_uid, tmp_path_factory.getbasetemp().parent):
        proc = run("mount", "-t", "storefs", f"file://{store}", str(mp), "-o",
                   f"setuid={user.pw_name},credfile={credfile}")
        assert proc.returncode == 0, proc.stderr
        # the user sees the mount as theirs, also after logging in (the daemon started
        # with no /run/user/UID: its socket is elsewhere)
        with logged_in(user) as runtime:
            status = run(*as_service_user(user, sys.executable, "-I", "-m", "storefs",
                                          "status", "--json", runtime=str(runtime)))
        assert status.returncode == 0, status.stderr
        [st] = json.loads(status.stdout)
        assert st["mountpoint"] == str(mp)
        pid = int(st["pid"])
        ids = proc_status(pid)
        assert ids["Uid"] == [str(user.pw_uid)] * 4 and ids["Gid"] == [str(user.pw_gid)] * 4
        groups = {int(g) for g in ids["Groups"]}
        assert groups == set(os.getgrouplist(user.pw_name, user.pw_gid)) and 0 not in groups
        environ = dict(item.split(b"=", 1) for item in
                       Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item)
        assert environ[b"HOME"] == user.pw_dir.encode()
        assert environ[b"USER"] == environ[b"LOGNAME"] == user.pw_name.encode()
        assert environ[b"STOREFS_TEST_TOKEN"] == token.encode()
        assert b"SSH_AUTH_SOCK" not in environ
        # files made through the mount are the user's, in the store too
        wrote = as_user(user.pw_uid, "sh", "-c", f"echo hi > {mp}/by-user.txt",
                        gid=user.pw_gid)
        assert wrote.returncode == 0, wrote.stderr
        assert os.stat(store / "by-user.txt").st_uid == user.pw_uid
        # root's umount reaches the user's daemon (umount.fuse.storefs runs storefs umount
        # as the user): it uploads, unmounts, and the daemon ends
        proc = run("umount", str(mp))
        assert proc.returncode == 0, proc.stderr
        assert "not running" not in proc.stderr
        assert not is_mounted(mp)
        wait_for(lambda: process_gone(pid), 30, "the daemon to exit")
    assert (store / "by-user.txt").read_text() == "hi\n"


def test_only_root_may_run_the_daemon_as_someone_else(
        service_user: pwd.struct_passwd, user_dir: Path,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    user = service_user
    mp = user_dir / "mnt"
    mp.mkdir()
    os.chown(mp, user.pw_uid, user.pw_gid)
    helper = str(Path(sys.executable).parent / "mount.storefs")
    with usable_by(user.pw_uid, tmp_path_factory.getbasetemp().parent):
        proc = run(*as_service_user(user, helper, "mem://x", str(mp), "-o", "setuid=root"))
    one_line_error(proc, "mount.storefs: setuid=root: only root can run the daemon as "
                         "another user")
    assert not is_mounted(mp)
