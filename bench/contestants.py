"""The contestants: storefs, rclone mount, s3fs-fuse, the raw directory, a direct client.

Each ``Contestant.open()`` makes one *fresh* mount (a new, empty cache directory) of the
store root and returns a ``Mount``; ``Mount.stop()`` unmounts it (waiting for pending
uploads where the tool does that itself) and removes its cache directory.

"Stored" means the tool has the data in the store.  ``storefs`` returns from ``close`` once
the upload is done, and so do ``rclone --vfs-cache-mode off`` (it streams the write and
waits for the upload in FLUSH) and ``s3fs`` (it uploads in FLUSH).  ``rclone
--vfs-cache-mode full`` returns from ``close`` as soon as the bytes are in its cache file
and uploads later, so for it ``wait_stored`` polls rclone's own remote control until
``operations/list`` of the backend (not of the VFS) shows every expected object with its
full size and ``core/stats`` lists no transfer in progress.  It is started with
``--vfs-write-back 0s`` so that the upload starts at once instead of after the default
5 s.  (rclone 1.60's ``vfs/stats`` counters ``uploadsInProgress``/``uploadsQueued`` stay 0
during such an upload, so they cannot be used.)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench.stores import Store, tool_env
from tests.servers._shared import free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


# -- helpers ---------------------------------------------------------------------------


def is_mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


def abort_fuse(path: Path) -> None:
    """Unblock a hung FUSE mount: abort its connection, then detach it lazily."""
    with contextlib.suppress(OSError):
        dev = os.stat(path, follow_symlinks=False).st_dev
        (Path("/sys/fs/fuse/connections") / str(os.minor(dev)) / "abort").write_text("1")
    subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True, check=False)


def drop_caches() -> bool:
    """Write back and drop the kernel's page, dentry and inode caches (needs root)."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def proc_usage(pid: int | None) -> tuple[float, int] | None:
    """(CPU seconds user+system, peak RSS in KiB) of ``pid`` from /proc, or None."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime and stime are fields 14 and 15
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    hwm = 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return cpu, hwm


def guarded(mount: Mount, seconds: float, what: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a worker thread.  A file system call blocked in a hung FUSE mount
    cannot be interrupted (not even by Ctrl-C), so after ``seconds``, or on Ctrl-C, this
    aborts the mount's FUSE connection: the blocked call fails (ENOTCONN) and the worker
    ends.  Raises ``TimeoutError`` (with the tool's own state, where it has one) then."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    worker = threading.Thread(target=target, name=what, daemon=True)
    worker.start()
    deadline = time.monotonic() + seconds
    try:
        while worker.is_alive():
            worker.join(0.1)
            if worker.is_alive() and time.monotonic() > deadline:
                state = mount.diagnose()
                print(f"[bench] {what} still running after {seconds:.0f}s: aborting the "
                      "mount", file=sys.stderr, flush=True)
                mount.abort()
                worker.join(60)
                raise TimeoutError(f"{what}: not done within {seconds:.0f}s, mount aborted"
                                   + (f"; state then: {state}" if state else ""))
    except KeyboardInterrupt:
        print(f"[bench] interrupted during {what}: aborting the mount", file=sys.stderr)
        mount.abort()
        worker.join(60)
        raise
    if error:
        raise error[0]
    return result[0]


def _wait(check: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None,
          log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up\n{tail}")


# -- mounts ----------------------------------------------------------------------------


class Mount:
    """One live mount (or the raw directory / a direct client) of the store root."""

    #: where the store root shows; None for a direct client
    root: Path | None = None
    #: the FUSE mountpoint (None for the raw directory and a direct client)
    mountpoint: Path | None = None
    #: True when close() returns before the data is in the store
    async_uploads = False
    log: Path | None = None

    def pid(self) -> int | None:
        return None

    def wait_stored(self, rel: str, expect: dict[str, int], timeout: float = 600) -> float:
        """Block until ``expect`` (name -> size) is in the store under ``rel``; return the
        monotonic time of the first check that saw it all."""
        return time.monotonic()

    def requests(self) -> dict[str, int] | None:
        """Store requests so far, by kind (storefs only)."""
        return None

    def diagnose(self) -> str:
        """What the tool says it is doing (for a report on a hang)."""
        return ""

    def abort(self) -> None:
        if self.mountpoint is not None:
            abort_fuse(self.mountpoint)

    def log_tail(self, lines: int = 30) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        pass


class RawMount(Mount):
    def __init__(self, root: Path) -> None:
        self.root = root


class DirectMount(Mount):
    """No mount: the contestant is an httpx client of the store (the Manta ceiling)."""

    def __init__(self, client: httpx.Client, root: str) -> None:
        self.client = client
        self.base = root

    def stop(self) -> None:
        self.client.close()


class StorefsMount(Mount):
    def __init__(self, store: Store, mountpoint: Path, cache: Path, log: Path,
                 extra: dict[str, str]) -> None:
        self.store, self.mountpoint, self.root, self.cache, self.log = (
            store, mountpoint, mountpoint, cache, log)
        self._pid: int | None = None
        opts = {**store.options, **extra}
        #: -o sync_close=false: close returns before the upload (like rclone full)
        self.async_uploads = opts.get("sync_close") == "false"
        args = ["mount", store.source, str(mountpoint), "--cache-dir", str(cache),
                "--log-file", str(log)]
        if opts:
            args += ["-o", ",".join(f"{k}={v}" for k, v in opts.items())]
        proc = self._storefs(*args, timeout=120)
        if proc.returncode != 0 or not is_mounted(mountpoint):
            raise RuntimeError(f"storefs mount failed ({proc.returncode}): "
                               f"{proc.stderr.strip()}\n{self.log_tail()}")
        try:
            self._pid = int(self.status()["pid"])
        except BaseException:
            self.stop()
            raise

    def _storefs(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "storefs", *args], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              env={**os.environ, **self.store.env})

    def status(self) -> dict[str, Any]:
        proc = self._storefs("status", "--json", str(self.mountpoint), timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"storefs status failed: {proc.stderr.strip()}")
        data = json.loads(proc.stdout)
        entry: dict[str, Any] = data[0] if isinstance(data, list) else data
        return entry

    def pid(self) -> int | None:
        return self._pid

    def wait_stored(self, rel: str, expect: dict[str, int], timeout: float = 600) -> float:
        """With uploads after close: until the daemon has nothing pending, asked over its
        control socket from this process (a ``storefs status`` process takes ~0.2 s to
        start, too coarse a clock)."""
        if not self.async_uploads:
            return time.monotonic()
        from storefs.control import request

        assert self.mountpoint is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = time.monotonic()
            status = request(self.mountpoint, {"cmd": "status"}, timeout=30).get("status")
            if isinstance(status, dict) and status["filesystem"]["pending_uploads"] == 0:
                return t
            time.sleep(0.02)
        raise TimeoutError(f"storefs still uploading under {rel} after {timeout:.0f} s")

    def requests(self) -> dict[str, int] | None:
        counts: dict[str, int] = dict(self.status()["requests"]["requests"])
        return counts

    def diagnose(self) -> str:
        try:
            st = self.status()
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
            return f"storefs status failed: {exc}"
        keep = {k: st.get(k) for k in ("requests", "pending", "writeback", "reads")}
        keep["filesystem"] = {k: v for k, v in st.get("filesystem", {}).items()
                              if k != "operations"}
        return json.dumps(keep)

    def stop(self) -> None:
        assert self.mountpoint is not None
        try:
            if is_mounted(self.mountpoint):
                proc = self._storefs("umount", str(self.mountpoint), timeout=900)
                if proc.returncode != 0:
                    raise RuntimeError(f"storefs umount failed: {proc.stderr.strip()}")
        except (RuntimeError, subprocess.TimeoutExpired):
            abort_fuse(self.mountpoint)
            if self._pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._pid, signal.SIGKILL)
            raise
        finally:
            shutil.rmtree(self.cache, ignore_errors=True)


class ProcessMount(Mount):
    """A FUSE tool run in the foreground as our child (rclone mount, s3fs -f)."""

    def __init__(self, args: list[str], env: dict[str, str], mountpoint: Path, cache: Path,
                 log: Path) -> None:
        self.mountpoint, self.root, self.cache, self.log = mountpoint, mountpoint, cache, log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        try:
            _wait(lambda: is_mounted(mountpoint), 60, args[0], self.proc, log)
        except BaseException:
            self._kill()
            raise

    def pid(self) -> int | None:
        return self.proc.pid

    def _kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        assert self.mountpoint is not None
        if is_mounted(self.mountpoint):
            abort_fuse(self.mountpoint)

    def stop(self) -> None:
        assert self.mountpoint is not None
        try:
            subprocess.run(["fusermount3", "-u", str(self.mountpoint)], capture_output=True,
                           check=False, timeout=60)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(120)
        finally:
            self._kill()
            shutil.rmtree(self.cache, ignore_errors=True)


class RcloneMount(ProcessMount):
    def __init__(self, store: Store, conf: Path, mode: str, mountpoint: Path, cache: Path,
                 log: Path) -> None:
        assert store.rclone_remote is not None
        self.remote = store.rclone_remote
        self.port = free_port()
        self.async_uploads = mode != "off"
        args = ["rclone", "mount", self.remote, str(mountpoint), "--config", str(conf),
                "--vfs-cache-mode", mode, "--cache-dir", str(cache), "--log-file", str(log),
                "--log-level", "NOTICE", "--rc", "--rc-addr", f"127.0.0.1:{self.port}",
                "--rc-no-auth"]
        if mode != "off":
            args += ["--vfs-write-back", "0s"]
        super().__init__(args, tool_env(), mountpoint, cache, log)
        self.rc = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60,
                               trust_env=False)

    def _listing(self, rel: str) -> dict[str, int]:
        r = self.rc.post("/operations/list", json={"fs": self.remote, "remote": rel})
        if r.status_code != 200:
            return {}
        return {i["Name"]: int(i["Size"]) for i in r.json().get("list", []) if not i["IsDir"]}

    def _transferring(self) -> bool:
        r = self.rc.post("/core/stats")
        return r.status_code != 200 or bool(r.json().get("transferring"))

    def wait_stored(self, rel: str, expect: dict[str, int], timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = time.monotonic()
            listing = self._listing(rel)
            if all(listing.get(name) == size for name, size in expect.items()) \
                    and not self._transferring():
                return t
            time.sleep(0.05)
        raise TimeoutError(f"rclone did not upload {rel} within {timeout:.0f}s")

    def stop(self) -> None:
        self.rc.close()
        super().stop()


class S3fsMount(ProcessMount):
    def __init__(self, store: Store, mountpoint: Path, cache: Path, log: Path) -> None:
        s = store.s3fs
        assert s is not None
        # credentials from the environment: a passwd file cannot hold an access key with a
        # colon in it (Swift's "test:tester")
        env = tool_env({"AWSACCESSKEYID": s["access"], "AWSSECRETACCESSKEY": s["secret"]})
        opts = f"url={s['url']},use_path_request_style,endpoint={s['region']},dbglevel=warn"
        cache.mkdir(parents=True, exist_ok=True)
        super().__init__(["s3fs", s["bucket"], str(mountpoint), "-f", "-o", opts], env,
                         mountpoint, cache, log)


# -- contestants -----------------------------------------------------------------------


class Contestant:
    """Something that makes fresh mounts of one store."""

    def __init__(self, name: str, kind: str, store: Store, workdir: Path, conf: Path,
                 mode: str = "", extra: dict[str, str] | None = None) -> None:
        self.name, self.kind, self.store, self.mode = name, kind, store, mode
        self.workdir, self.conf = workdir, conf
        self.extra = extra or {}
        self.sessions = 0
        self.mountpoint = workdir / "mnt" / f"{store.name}-{name}"
        self.logdir = workdir / "logs" / store.name
        self.logdir.mkdir(parents=True, exist_ok=True)

    @property
    def is_fuse(self) -> bool:
        return self.kind in ("storefs", "rclone", "s3fs")

    def open(self) -> Mount:
        self.sessions += 1
        cache = self.workdir / "cache" / self.store.name / self.name / str(self.sessions)
        shutil.rmtree(cache, ignore_errors=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        log = self.logdir / f"{self.name}.log"
        if self.kind == "raw":
            assert self.store.raw_dir is not None
            return RawMount(self.store.raw_dir)
        if self.kind == "direct":
            from bench.stores import manta_client

            return DirectMount(manta_client(self.store), self.store.source.removeprefix("manta:"))
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if self.kind == "storefs":
            return StorefsMount(self.store, self.mountpoint, cache, log, self.extra)
        if self.kind == "rclone":
            return RcloneMount(self.store, self.conf, self.mode, self.mountpoint, cache, log)
        if self.kind == "s3fs":
            return S3fsMount(self.store, self.mountpoint, cache, log)
        raise ValueError(self.kind)


def contestants_for(store: Store, workdir: Path, conf: Path) -> list[Contestant]:
    out = [Contestant("storefs", "storefs", store, workdir, conf),
           # close returns at once, uploads follow in the background (rclone full's mode)
           Contestant("storefs-async", "storefs", store, workdir, conf,
                      extra={"sync_close": "false"})]
    if store.rclone_remote is not None:
        out += [Contestant("rclone-full", "rclone", store, workdir, conf, "full"),
                Contestant("rclone-off", "rclone", store, workdir, conf, "off")]
    if store.s3fs is not None:
        out.append(Contestant("s3fs", "s3fs", store, workdir, conf))
    if store.raw_dir is not None:
        out.append(Contestant("raw-dir", "raw", store, workdir, conf))
    if store.manta is not None:
        out.append(Contestant("httpx-direct", "direct", store, workdir, conf))
    return out
