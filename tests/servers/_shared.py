"""Test servers started once per test session, shared by every pytest-xdist worker.

A server fixture calls ``shared_server(tmp_path_factory, name, launch)``.  The first worker
to get there takes a file lock, runs ``launch(workdir)`` (which starts the server as a
detached process on 127.0.0.1, waits until it answers and returns a JSON-serialisable dict
with at least ``"pid"``), and records the dict; every other worker reads the record.  The
controller process stops every recorded server by PID (its whole process group) at the end
of the session (``stop_all``, called from ``tests/conftest.py``), so no server outlives the
run and none is started twice.

``launch`` must start its process with ``start_new_session=True`` so that killing the
process group takes its children (Swift's workers, nginx's workers) with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

Launch = Callable[[Path], dict[str, Any]]


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory common to the controller and all workers of this session."""
    base = tmp_path_factory.getbasetemp()
    # under xdist each worker's basetemp is <root>/popen-gwN; the root is shared
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    d = root / "servers"
    d.mkdir(exist_ok=True)
    return d


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def shared_server(tmp_path_factory: pytest.TempPathFactory, name: str,
                  launch: Launch) -> dict[str, Any]:
    """Start ``name`` once per session (see the module docstring); returns its record."""
    root = shared_root(tmp_path_factory)
    record = root / f"{name}.json"
    failed = root / f"{name}.failed"
    with _locked(root / f"{name}.lock"):
        if record.exists():
            info: dict[str, Any] = json.loads(record.read_text())
            return info
        if failed.exists():
            pytest.fail(f"test server {name} failed to start earlier: {failed.read_text()}")
        workdir = root / name
        workdir.mkdir(exist_ok=True)
        try:
            info = launch(workdir)
        except BaseException as exc:
            failed.write_text(f"{type(exc).__name__}: {exc}")
            raise
        record.write_text(json.dumps(info))
        return info


def stop_all(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Stop every server this session started (controller only)."""
    root = shared_root(tmp_path_factory)
    for record in sorted(root.glob("*.json")):
        info = json.loads(record.read_text())
        pids = [info["pid"], *info.get("more_pids", [])]
        for pid in pids:
            kill_group(pid)
        record.unlink()


def kill_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group of ``pid``, SIGKILL it if it lingers."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = 0
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        if done:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               proc: subprocess.Popen[Any] | None = None, log: Path | None = None) -> None:
    """Poll ``check`` until it returns True; fail with the server's log tail otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    state = f"exited with {proc.returncode}" if proc is not None and proc.poll() is not None \
        else f"not ready after {timeout:.0f}s"
    raise RuntimeError(f"{what} {state}\n{tail}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0
