"""Real kernel mounts for the mounted-tool tests.

``mounted`` is one fresh mount per test, parametrised over every target: the built-in
``mem`` and ``file`` targets below plus the ``TARGETS`` of every ``tests/mount/target_*.py``
(see ``_target.py``).  The mount is made the way a user makes it, with
``storefs mount SOURCE MOUNTPOINT -o ...`` in daemon mode, and at the end of the test it is
unmounted with ``storefs umount``; the test fails if that fails or if the daemon logged a
traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from storefs.control import request as control_request
from tests.mount._target import MountTarget, TargetContext, TargetFactory

HERE = Path(__file__).parent
_counter = itertools.count()
COMMAND_TIMEOUT = 180


@contextlib.contextmanager
def _mem(ctx: TargetContext) -> Iterator[MountTarget]:
    yield MountTarget(f"mem://{ctx.name}", {"mem_page_size": "50"},
                      lacks={"persistence": "mem:// keeps nothing once the daemon ends"})


@contextlib.contextmanager
def _file(ctx: TargetContext) -> Iterator[MountTarget]:
    store = ctx.tmp_path / "store"
    store.mkdir()
    yield MountTarget(f"file://{store}")


def _discover() -> dict[str, TargetFactory]:
    found: dict[str, TargetFactory] = {"mem": _mem, "file": _file}
    for path in sorted(HERE.glob("target_*.py")):
        module = importlib.import_module(f"tests.mount.{path.stem}")
        found.update(module.TARGETS)
    return found


TARGETS = _discover()


def storefs(*args: str, env: dict[str, str] | None = None, timeout: float = COMMAND_TIMEOUT,
            check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the ``storefs`` command (as ``python -m storefs``)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "storefs", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, check=check,
                          stdin=subprocess.DEVNULL)


def _fuse_connection(mountpoint: Path) -> str | None:
    """The FUSE connection number of the mount at ``mountpoint`` from /proc/self/mountinfo
    (a stat of a hung mount could block; a stat of a path no longer mounted gives another
    file system's device), or None when no FUSE mount is there."""
    target = os.path.realpath(mountpoint)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fields[4] == target and fstype.startswith("fuse"):
                return fields[2].split(":")[1]
    return None


def abort_fuse(mountpoint: Path) -> None:
    """Unblock a hung mount: abort its FUSE connection, then detach it."""
    with contextlib.suppress(OSError):
        conn = _fuse_connection(mountpoint)
        if conn is not None:
            (Path("/sys/fs/fuse/connections") / conn / "abort").write_text("1")
    subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True,
                   check=False)


def is_mounted(mountpoint: Path) -> bool:
    target = os.path.realpath(mountpoint)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


@dataclass
class Mounted:
    """A live mount of one target, and ways to look at it and break it."""

    target: MountTarget
    name: str
    path: Path
    cache_dir: Path
    log: Path
    extra_options: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.target.source

    def options(self) -> str:
        opts = {**self.target.options, **self.extra_options}
        return ",".join(k if v is None else f"{k}={v}" for k, v in opts.items())

    def mount(self, *extra: str) -> subprocess.CompletedProcess[str]:
        args = ["mount", self.source, str(self.path), "--cache-dir", str(self.cache_dir),
                "--log-file", str(self.log)]
        if self.options():
            args += ["-o", self.options()]
        proc = storefs(*args, *extra, env=self.target.env)
        assert proc.returncode == 0, f"mount failed: {proc.stderr}"
        assert is_mounted(self.path)
        return proc

    def pid(self) -> int:
        return int(control_request(self.path, {"cmd": "status"}, timeout=10)["status"]["pid"])

    def status(self) -> dict[str, object]:
        status: dict[str, object] = control_request(self.path, {"cmd": "status"},
                                                    timeout=10)["status"]
        return status

    def umount(self) -> None:
        proc = storefs("umount", str(self.path), "--timeout", "90", timeout=150)
        assert proc.returncode == 0, f"umount failed: {proc.stderr}"
        assert not is_mounted(self.path)

    def remount(self) -> None:
        self.umount()
        self.mount()

    def kill9(self) -> None:
        """Kill the daemon the hard way (no chance to upload anything), then detach."""
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True,
                       check=False)
        assert not is_mounted(self.path)

    def sh(self, script: str, *, cwd: Path | None = None, check: bool = True,
           timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run a shell script (``set -e``) with ``$M`` set to the mountpoint."""
        env = {**os.environ, "M": str(self.path)}
        try:
            proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script],
                                  capture_output=True, text=True, cwd=cwd or self.path,
                                  env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            # a hung mount: abort it so the test fails instead of hanging the suite
            abort_fuse(self.path)
            raise
        if check and proc.returncode != 0:
            raise AssertionError(f"script failed ({proc.returncode}):\n{script}\n"
                                 f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}")
        return proc

    def needs(self, feature: str) -> None:
        if feature in self.target.lacks:
            pytest.skip(self.target.lacks[feature])

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(scope="session", autouse=True)
def _fusectl() -> None:
    """The FUSE control filesystem, to abort a hung mount instead of hanging the suite."""
    conn = Path("/sys/fs/fuse/connections")
    if os.geteuid() == 0 and conn.is_dir() and not any(conn.iterdir()):
        subprocess.run(["mount", "-t", "fusectl", "none", str(conn)], capture_output=True,
                       check=False)


def make_mounted(request: pytest.FixtureRequest, tmp_path: Path,
                 target_name: str) -> Iterator[Mounted]:
    name = f"t{os.getpid()}x{next(_counter)}"
    ctx = TargetContext(request, tmp_path, name)
    with TARGETS[target_name](ctx) as target:
        mp = tmp_path / "mnt"
        mp.mkdir()
        m = Mounted(target, name, mp, tmp_path / "cache", tmp_path / "storefs.log")
        m.extra_options.update(getattr(request, "param_options", {}))
        marker = request.node.get_closest_marker("mount_options")
        if marker is not None:
            m.extra_options.update(marker.kwargs)
        m.mount()
        try:
            yield m
        finally:
            os.chdir("/")
            try:
                if is_mounted(mp):
                    try:
                        m.umount()
                    except (AssertionError, subprocess.TimeoutExpired):
                        abort_fuse(mp)
                        raise
            finally:
                log = m.log_text()
                assert "Traceback" not in log, f"the daemon logged a traceback:\n{log[-4000:]}"


@pytest.fixture(params=list(TARGETS))
def mounted(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mounted]:
    yield from make_mounted(request, tmp_path, request.param)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mount_options(**opts): extra -o options for the mount")
