"""Stopping a mount the way a service manager does: SIGTERM (uploads, then unmounts), a
second SIGTERM or SIGKILL after the stop timeout (pending uploads stay in the journal and
the next mount finishes them), and ``storefs status`` showing what is pending."""

from __future__ import annotations

import array
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.servers._shared import kill_group
from tests.servers.fixture_moto import launch_moto
from tests.service.conftest import (
    Notifications,
    daemon_pid,
    is_mounted,
    process_gone,
    run,
    wait_for,
)

pytestmark = pytest.mark.mount

MiB = 1 << 20


def pattern(start: int, length: int) -> bytes:
    """Bytes of a stream where every 8-byte word holds its own offset (misplaced or stale
    bytes cannot pass for right ones)."""
    first = start // 8
    words = array.array("Q", range(first, first + length // 8 + 2))
    if sys.byteorder != "little":
        words.byteswap()
    skip = start - first * 8
    return words.tobytes()[skip:skip + length]


@dataclass
class Writer:
    """Writes a big file through the mount in 1 MiB writes, fsync every 8 MiB, until the
    mount goes away; ``written`` is what write() accepted, ``synced`` what fsync confirmed."""

    path: Path
    limit: int
    written: int = 0
    synced: int = 0
    error: OSError | None = None

    def run(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            self.error = exc
            return
        try:
            while self.written < self.limit:
                self.written += os.write(fd, pattern(self.written, MiB))
                if self.written % (8 * MiB) == 0:
                    os.fsync(fd)
                    self.synced = self.written
        except OSError as exc:
            self.error = exc
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)


def test_sigterm_during_a_large_write_loses_nothing_acknowledged(tmp_path: Path,
                                                                   mounts: list[Path]) -> None:
    store, mp, cache = tmp_path / "store", tmp_path / "mnt", tmp_path / "cache"
    store.mkdir()
    mp.mkdir()
    mounts.append(mp)
    args = ["mount", "-t", "storefs", f"file://{store}", str(mp), "-o", f"cache_dir={cache}"]
    assert run(*args).returncode == 0
    pid = daemon_pid(mp)
    writer = Writer(mp / "big.bin", limit=2048 * MiB)
    thread = threading.Thread(target=writer.run)
    thread.start()
    try:
        wait_for(lambda: writer.synced >= 32 * MiB or not thread.is_alive(), 120,
                 "32 MiB written and synced")
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: process_gone(pid), 120, "the daemon to exit after SIGTERM")
    finally:
        thread.join(120)
    assert writer.error is not None, "the writer should have seen the mount go away"
    assert not is_mounted(mp)
    stored = (store / "big.bin").read_bytes()
    # what fsync acknowledged is in the store when the daemon has exited
    assert len(stored) >= writer.synced and stored == pattern(0, len(stored))
    # and every write() the daemon accepted is there once the next mount has run
    assert run(*args).returncode == 0
    assert run("umount", str(mp)).returncode == 0
    stored = (store / "big.bin").read_bytes()
    assert len(stored) >= writer.written and stored == pattern(0, len(stored))


# -- a store that stops answering during the shutdown -------------------------------------

@pytest.fixture
def moto(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A private S3 server, which the test may stop (SIGSTOP) and continue."""
    server = launch_moto(tmp_path / "moto")
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server["pid"], signal.SIGCONT)
        kill_group(server["pid"])


def s3(server: dict[str, Any]) -> Any:
    return boto3.client("s3", endpoint_url=server["endpoint"], region_name=server["region"],
                        aws_access_key_id="test", aws_secret_access_key="test")


@pytest.mark.parametrize("second", ["SIGTERM", "SIGKILL"],
                         ids=["second-sigterm", "sigkill-after-stop-timeout"])
def test_a_stuck_upload_is_finished_by_the_next_mount(
        request: pytest.FixtureRequest, tmp_path: Path, mounts: list[Path],
        moto: dict[str, Any], second: str) -> None:
    bucket = f"stuck-{uuid.uuid4().hex[:12]}"
    s3(moto).create_bucket(Bucket=bucket)
    credfile = tmp_path / "s3.env"
    credfile.write_text("AWS_ACCESS_KEY_ID=test\nAWS_SECRET_ACCESS_KEY=test\n")
    credfile.chmod(0o600)
    mp = tmp_path / "mnt"
    mp.mkdir()
    mounts.append(mp)
    notify = Notifications(str(tmp_path / "notify"))
    request.addfinalizer(notify.close)
    env = {**os.environ, "NOTIFY_SOCKET": notify.address}
    args = ["mount", "-t", "storefs", f"s3://{bucket}", str(mp), "-o",
            f"endpoint={moto['endpoint']},region=us-east-1,read_timeout=2,connect_timeout=2,"
            f"credfile={credfile},cache_dir={tmp_path / 'cache'}"]
    proc = run(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    notify.wait("READY=1", 30)
    pid = daemon_pid(mp)
    (mp / "done.txt").write_text("acknowledged\n")  # closed: in the store
    data = pattern(0, 3 * MiB)
    written, go_close = threading.Event(), threading.Event()
    closed: list[BaseException | None] = []

    def write() -> None:
        try:
            with open(mp / "stuck.bin", "wb") as f:
                f.write(data)
                f.flush()
                written.set()
                go_close.wait(60)
            closed.append(None)
        except OSError as exc:
            closed.append(exc)
        finally:
            written.set()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        wait_for(written.is_set, 60, "the file to be written")
        os.kill(moto["pid"], signal.SIGSTOP)  # the store stops answering
        go_close.set()  # close() now waits for an upload that cannot finish
        wait_for(lambda: daemon_status(pid, mp, "pending"), 30, "the upload to be pending")
        os.kill(pid, signal.SIGTERM)
        notify.wait("STOPPING=1", 30)
        os.kill(pid, getattr(signal, second))
        wait_for(lambda: process_gone(pid), 60, f"the daemon to end after {second}")
    finally:
        go_close.set()
        thread.join(60)
    assert closed and closed[0] is not None, "close() must not succeed for an upload not done"
    if second == "SIGKILL":
        # what ExecStopPost of storefs@.service does after a kill: detach the dead mount
        run("fusermount3", "-u", "-z", "-q", str(mp))
    assert not is_mounted(mp)
    os.kill(moto["pid"], signal.SIGCONT)
    # the next mount adopts the journal and uploads; umount waits for it
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    assert (mp / "stuck.bin").read_bytes() == data
    assert run("umount", str(mp)).returncode == 0
    client = s3(moto)
    assert client.get_object(Bucket=bucket, Key="stuck.bin")["Body"].read() == data
    assert client.get_object(Bucket=bucket, Key="done.txt")["Body"].read() == b"acknowledged\n"


def daemon_status(pid: int, mp: Path, what: str) -> bool:
    """True when the daemon's status lists a pending upload (the control channel answers
    even while the store does not)."""
    from storefs.control import request

    st = request(mp, {"cmd": "status"}, timeout=10)["status"]
    return bool(st.get(what)) and st["pid"] == pid


# -- storefs status -----------------------------------------------------------------------

@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` read-only even for root (a read-only bind mount over itself)."""
    subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_status_shows_the_mount_and_its_pending_uploads(tmp_path: Path,
                                                         mounts: list[Path]) -> None:
    store, mp = tmp_path / "store", tmp_path / "mnt"
    store.mkdir()
    mp.mkdir()
    mounts.append(mp)
    assert run("mount", "-t", "storefs", f"file://{store}", str(mp), "-o",
               f"cache_dir={tmp_path / 'cache'}").returncode == 0
    storefs = [sys.executable, "-m", "storefs"]
    (mp / "first.txt").write_text("in the store\n")
    with read_only(store):
        with pytest.raises(OSError):  # close reports the failed upload
            (mp / "report.csv").write_text("a,b\n1,2\n")
        text = run(*storefs, "status", str(mp))
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0].startswith(f"file://{store} on {mp} (pid {daemon_pid(mp)}, up ")
        assert "  pending uploads: 1 (8 B)" in lines
        assert any(line.startswith("    report.csv (8 B) - last error: ") for line in lines)
        everything = run(*storefs, "status", "--json")
        [mine] = [st for st in json.loads(everything.stdout) if st["mountpoint"] == str(mp)]
        assert [p["key"] for p in mine["pending"]] == ["report.csv"]
    # the store takes writes again: umount uploads what was pending
    proc = run(*storefs, "umount", str(mp))
    assert proc.returncode == 0, proc.stderr
    assert (store / "report.csv").read_text() == "a,b\n1,2\n"
    assert (store / "first.txt").read_text() == "in the store\n"
