"""Running storefs as a system service: mount(8) with the helper, fstab, systemd units.

The tests mount through the kernel as root, the way an administrator does: ``mount -t
storefs``, ``mount -T FSTAB``, ``umount`` (through ``/sbin/mount.storefs`` and
``/sbin/umount.fuse.storefs``, which ``scripts/install-mount-helper.sh`` installs; the
session runs it when the links do not point into this checkout), and check as other users
with ``setpriv``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storefs.control import request as control_request
from tests.mount.conftest import abort_fuse, is_mounted

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
NOBODY = 65534
#: a user that exists nowhere: neither owner nor group of anything
STRANGER = 4242
SERVICE_USER = "storefs-svc"
TIMEOUT = 120


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


def run(*cmd: str, env: dict[str, str] | None = None, timeout: float = TIMEOUT,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, cwd="/", env=env,
                          timeout=timeout, input=input, stdin=None if input else
                          subprocess.DEVNULL, check=False)


def as_user(uid: int, *cmd: str, gid: int | None = None) -> subprocess.CompletedProcess[str]:
    """``cmd`` as another user, without supplementary groups."""
    return run("setpriv", f"--reuid={uid}", f"--regid={uid if gid is None else gid}",
               "--clear-groups", *cmd)


def one_line_error(proc: subprocess.CompletedProcess[str], prefix: str) -> str:
    """The command failed with one line on stderr, starting with ``prefix``."""
    assert proc.returncode != 0, f"expected a failure, got: {proc.stdout}{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def daemon_pid(mountpoint: Path, socket: Path | None = None) -> int:
    status = control_request(mountpoint, {"cmd": "status"}, path=socket, timeout=10)
    return int(status["status"]["pid"])


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie of ours counts as gone
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    return True


class Notifications:
    """A ``NOTIFY_SOCKET`` like systemd's (a path, or ``@name`` in the abstract namespace):
    what a daemon sends to it (sd_notify(3))."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.received: list[str] = []

    def seen(self, line: str) -> bool:
        return any(line in msg.splitlines() for msg in self.received)

    def wait(self, line: str, timeout: float,
             proc: subprocess.Popen[str] | None = None) -> None:
        """Until ``line`` came (fails if ``proc`` ends first)."""
        deadline = time.monotonic() + timeout
        while not self.seen(line):
            left = deadline - time.monotonic()
            if left <= 0 or (proc is not None and proc.poll() is not None):
                exited = "" if proc is None else f", exit status {proc.poll()}"
                raise AssertionError(f"no {line} (got {self.received}{exited})")
            self.sock.settimeout(min(left, 0.2))
            with contextlib.suppress(TimeoutError):
                self.received.append(self.sock.recv(4096).decode())

    def close(self) -> None:
        self.sock.close()


#: what the service tests run besides storefs (scripts/install-mount-helper.sh --test)
TEST_TOOLS = ("systemd-analyze", "ruby", "vagrant", "setpriv", "useradd", "ps", "mount")


@pytest.fixture(scope="session", autouse=True)
def helper_installed(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The mount helpers of this checkout are where mount(8) looks for them, and the tools
    the tests drive are there: the set-up script runs when something is missing (the test
    set-up normally ran it already; then this costs nothing)."""
    if os.geteuid() != 0:
        pytest.skip("the service tests mount through mount(8) as root")
    mine = (Path(sys.executable).parent / "mount.storefs").resolve()
    links = [Path(f"/sbin/{n}") for n in ("mount.storefs", "mount.fuse.storefs",
                                          "umount.storefs", "umount.fuse.storefs")]
    lock = tmp_path_factory.getbasetemp().parent / "install-mount-helper.lock"
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        if (any(not p.exists() or p.resolve() != mine for p in links)
                or any(shutil.which(t) is None for t in TEST_TOOLS)):
            proc = run("bash", str(REPO / "scripts/install-mount-helper.sh"), "--test",
                       str(mine), timeout=900)
            assert proc.returncode == 0, proc.stderr


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    """Mountpoints a test mounted; whatever is still mounted at the end is unmounted."""
    made: list[Path] = []
    yield made
    for mp in made:
        if is_mounted(mp):
            proc = run("umount", str(mp))
            if proc.returncode != 0 or is_mounted(mp):
                abort_fuse(mp)


def stat_mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- another user for the daemon ----------------------------------------------------------

ACL_XATTR = "system.posix_acl_access"
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_MASK, _ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_UNDEFINED = 0xFFFFFFFF


def _acl_with_search(mode: int, uid: int) -> bytes:
    """A POSIX access ACL equal to ``mode`` plus search (x) permission for ``uid``."""
    group = (mode >> 3) & 7
    entries = [(_ACL_USER_OBJ, (mode >> 6) & 7, _UNDEFINED), (_ACL_USER, 1, uid),
               (_ACL_GROUP_OBJ, group, _UNDEFINED), (_ACL_MASK, group | 1, _UNDEFINED),
               (_ACL_OTHER, mode & 7, _UNDEFINED)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def _closed_ancestors(paths: list[str]) -> list[Path]:
    closed: list[Path] = []
    for p in paths:
        for d in [*reversed(Path(p).parents), Path(p)]:
            st = os.stat(d)
            if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IXOTH and d not in closed:
                closed.append(d)
    return closed


@contextlib.contextmanager
def usable_by(uid: int, lock_dir: Path) -> Iterator[None]:
    """Let ``uid`` run a FUSE daemon with this interpreter, for the duration.

    Directories on the way to the interpreter or to storefs that others may not search
    (``/root`` of a pyenv build) get an ACL entry giving ``uid`` search permission only, and
    ``/dev/fuse`` gets the mode Debian's udev gives it (0666) when a container made it
    root's only; both are put back at the end.  One test at a time holds this."""
    paths = [os.path.realpath(sys.executable), sys.prefix, sys.base_prefix, str(REPO)]
    with open(lock_dir / "usable-by.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        changed: list[tuple[Path, int]] = []
        try:
            for d in _closed_ancestors(paths):
                with contextlib.suppress(OSError):
                    os.getxattr(d, ACL_XATTR)
                    pytest.skip(f"{d} already has an ACL; cannot open it to user {uid}")
                mode = stat_mode(d)
                os.setxattr(d, ACL_XATTR, _acl_with_search(mode, uid))
                changed.append((d, mode))
            fuse = Path("/dev/fuse")
            mode = stat_mode(fuse)
            if mode != 0o666:
                changed.append((fuse, mode))
                fuse.chmod(0o666)
            yield
        finally:
            for d, mode in changed:
                if d.is_dir():
                    os.removexattr(d, ACL_XATTR)
                os.chmod(d, mode)


@pytest.fixture(scope="session")
def service_user(tmp_path_factory: pytest.TempPathFactory) -> pwd.struct_passwd:
    """A system user for the daemon (created once, in the group ``users`` as well)."""
    lock = tmp_path_factory.getbasetemp().parent / "service-user.lock"
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(SERVICE_USER)
        except KeyError:
            pass
        proc = run("useradd", "--system", "--create-home", "--home-dir",
                   f"/var/lib/{SERVICE_USER}", "--shell", "/usr/sbin/nologin", "--groups",
                   "users", SERVICE_USER)
        assert proc.returncode == 0, proc.stderr
        return pwd.getpwnam(SERVICE_USER)


@pytest.fixture
def user_dir(service_user: pwd.struct_passwd) -> Iterator[Path]:
    """A directory of the service user's (outside root's private pytest directories)."""
    d = Path(tempfile.mkdtemp(prefix="storefs-service-"))
    os.chown(d, service_user.pw_uid, service_user.pw_gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every user may search (root's pytest directories are private): for
    mountpoints other users must reach."""
    d = Path(tempfile.mkdtemp(prefix="storefs-service-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)
