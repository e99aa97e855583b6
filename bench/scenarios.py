"""The scenarios, measured the same way for every contestant.

A contestant runs four sessions, each on a fresh mount (new, empty cache directory); the
three "cold" ones start after ``drop_caches`` (page, dentry and inode caches, which also
empties the servers' own page cache of their data files):

``write``  seq_write, create_small, rename_file, rename_dir (writes go to ``w-<name>/``)
``read``   seq_read (cold)
``ls``     ls_cold, ls_warm, stat_warm
``fio``    fio_rand (cold)

Timed writes end when the data is stored (``Mount.wait_stored``, see contestants.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.contestants import Contestant, DirectMount, Mount, drop_caches, guarded, proc_usage

MiB = 1 << 20
BLOCK = MiB
SMALL = 4096


@dataclass
class Params:
    size: int
    files: int
    entries: int
    fio_seconds: int
    fio_jobs: int = 4
    rename_size: int = 100 * MiB
    rename_files: int = 100
    stats: int = 1000
    timeout: float = 600.0


@dataclass
class Row:
    key: str
    label: str
    higher_is_better: bool


def rows(p: Params) -> list[Row]:
    size = _human(p.size)
    return [
        Row("seq_write", f"seq write {size}, until stored (MB/s)", True),
        Row("seq_read", f"seq read {size}, cold (MB/s)", True),
        Row("create_small", f"create {p.files} x 4 KiB files (files/s)", True),
        Row("ls_cold", f"ls -l {p.entries} entries, cold (s)", False),
        Row("ls_warm", f"ls -l {p.entries} entries, warm (s)", False),
        Row("stat_warm", f"{p.stats} warm stats (ops/s)", True),
        Row("fio_rand", f"fio random 4 KiB reads, {p.fio_jobs} jobs (IOPS)", True),
        Row("rename_file", f"rename a {_human(p.rename_size)} file (s)", False),
        Row("rename_dir", f"rename a {p.rename_files}-file directory (s)", False),
        Row("cpu_write", "mount CPU during seq write (s)", False),
        Row("cpu_read", "mount CPU during seq read (s)", False),
        Row("cpu_total", "mount CPU, all sessions (s)", False),
        Row("rss_peak", "mount peak RSS, VmHWM (MiB)", False),
    ]


def _human(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


@dataclass
class Outcome:
    """What one contestant got on one store."""

    values: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    #: storefs: store requests made during a scenario, by kind
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    #: extra facts (seconds until close vs until stored, ...)
    notes: dict[str, Any] = field(default_factory=dict)
    cpu_total: float = 0.0
    rss_peak_kib: int = 0


_PATTERN = os.urandom(16 * MiB)


def _write_file(path: Path, size: int) -> None:
    view = memoryview(_PATTERN)
    with open(path, "wb", buffering=0) as f:
        done = 0
        while done < size:
            off = done % len(_PATTERN)
            n = min(BLOCK, size - done, len(_PATTERN) - off)
            f.write(view[off:off + n])
            done += n


def _read_file(path: Path) -> int:
    buf = bytearray(BLOCK)
    total = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return total


def _chunks(size: int) -> Any:
    view = memoryview(_PATTERN)
    done = 0
    while done < size:
        off = done % len(_PATTERN)
        n = min(BLOCK, size - done, len(_PATTERN) - off)
        yield bytes(view[off:off + n])
        done += n


class Runner:
    """Runs the sessions of one contestant and fills its ``Outcome``."""

    def __init__(self, contestant: Contestant, params: Params, only: set[str] | None) -> None:
        self.c, self.p, self.only = contestant, params, only
        self.out = Outcome()

    def wanted(self, key: str) -> bool:
        return self.only is None or key in self.only

    # -- plumbing ----------------------------------------------------------------------

    def _measure(self, m: Mount, key: str, fn: Callable[[], float]) -> None:
        if not self.wanted(key):
            return
        print(f"[bench]   {self.c.store.name}/{self.c.name}: {key}", file=sys.stderr,
              flush=True)
        before = m.requests() if self.c.kind == "storefs" else None
        try:
            self.out.values[key] = guarded(m, self.p.timeout, f"{self.c.name} {key}", fn)
        except Exception as exc:  # recorded, the run goes on
            msg = f"{type(exc).__name__}: {exc}"
            tail = m.log_tail()
            self.out.errors[key] = msg + (f"\nlog tail:\n{tail}" if tail else "")
            print(f"[bench]   {key} failed: {msg}", file=sys.stderr, flush=True)
            if not isinstance(exc, OSError | TimeoutError | RuntimeError):
                traceback.print_exc()
        if before is not None:
            try:
                after = m.requests() or {}
                self.out.requests[key] = {k: v - before.get(k, 0) for k, v in after.items()
                                          if v - before.get(k, 0)}
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                self.out.notes[f"requests_{key}"] = f"status failed: {exc}"

    def _session(self, name: str, cold: bool, body: Callable[[Mount], None]) -> None:
        if cold and not drop_caches():
            self.out.notes["cold"] = "drop_caches needs root: 'cold' rows are not cold"
        try:
            m = self.c.open()
        except Exception as exc:
            self.out.errors[f"mount ({name} session)"] = f"{type(exc).__name__}: {exc}"
            print(f"[bench]   mount failed: {exc}", file=sys.stderr, flush=True)
            return
        try:
            # the session's own calls (mkdir, cleanup) are guarded too
            guarded(m, self.p.timeout * 8, f"{self.c.name} {name} session", lambda: body(m))
        except TimeoutError as exc:
            self.out.errors[f"{name} session"] = str(exc)
        finally:
            usage = proc_usage(m.pid()) if self.c.is_fuse else None
            if usage is not None:
                self.out.cpu_total += usage[0]
                self.out.rss_peak_kib = max(self.out.rss_peak_kib, usage[1])
                self.out.notes[f"rss_{name}_mib"] = round(usage[1] / 1024, 1)
            try:
                m.stop()
            except Exception as exc:
                self.out.errors[f"unmount ({name} session)"] = (
                    f"{type(exc).__name__}: {exc}\nlog tail:\n{m.log_tail()}")
                print(f"[bench]   unmount failed: {exc}", file=sys.stderr, flush=True)

    def _cpu(self, m: Mount) -> float | None:
        u = proc_usage(m.pid()) if self.c.is_fuse else None
        return None if u is None else u[0]

    def run(self) -> Outcome:
        if self.c.kind == "direct":
            self._session("write", False, self._direct_write)
            self._session("read", True, self._direct_read)
            return self.out
        if self.wanted_any("seq_write", "create_small", "rename_file", "rename_dir"):
            self._session("write", False, self._write_session)
        if self.wanted("seq_read"):
            self._session("read", True, self._read_session)
        if self.wanted_any("ls_cold", "ls_warm", "stat_warm"):
            self._session("ls", True, self._ls_session)
        if self.wanted("fio_rand"):
            self._session("fio", True, self._fio_session)
        if self.c.is_fuse:
            self.out.values["cpu_total"] = round(self.out.cpu_total, 2)
            self.out.values["rss_peak"] = round(self.out.rss_peak_kib / 1024, 1)
        return self.out

    def wanted_any(self, *keys: str) -> bool:
        return any(self.wanted(k) for k in keys)

    # -- write session -----------------------------------------------------------------

    def _write_session(self, m: Mount) -> None:
        assert m.root is not None
        rel = f"w-{self.c.name}"
        scratch = m.root / rel
        scratch.mkdir(exist_ok=True)
        p = self.p

        def seq_write() -> float:
            cpu0 = self._cpu(m)
            t0 = time.monotonic()
            _write_file(scratch / "big.bin", p.size)
            t_close = time.monotonic()
            t_stored = m.wait_stored(rel, {"big.bin": p.size}) if m.async_uploads else t_close
            cpu1 = self._cpu(m)
            if cpu0 is not None and cpu1 is not None:
                self.out.values["cpu_write"] = round(cpu1 - cpu0, 2)
            self.out.notes["seq_write_close_s"] = round(t_close - t0, 3)
            self.out.notes["seq_write_stored_s"] = round(t_stored - t0, 3)
            return round(p.size / 1e6 / (t_stored - t0), 1)

        def create_small() -> float:
            d = scratch / "small"
            d.mkdir()
            body = _PATTERN[:SMALL]
            names = [f"s{i:04d}" for i in range(p.files)]
            t0 = time.monotonic()
            for n in names:
                with open(d / n, "wb") as f:
                    f.write(body)
            t_close = time.monotonic()
            t_stored = (m.wait_stored(f"{rel}/small", dict.fromkeys(names, SMALL))
                        if m.async_uploads else t_close)
            self.out.notes["create_small_close_s"] = round(t_close - t0, 3)
            self.out.notes["create_small_stored_s"] = round(t_stored - t0, 3)
            return round(p.files / (t_stored - t0), 1)

        def rename_file() -> float:
            _write_file(scratch / "r100.bin", p.rename_size)
            if m.async_uploads:
                m.wait_stored(rel, {"r100.bin": p.rename_size})
            t0 = time.monotonic()
            os.rename(scratch / "r100.bin", scratch / "r100-renamed.bin")
            t1 = time.monotonic()
            if m.async_uploads:
                t1 = m.wait_stored(rel, {"r100-renamed.bin": p.rename_size})
            return round(t1 - t0, 3)

        def rename_dir() -> float:
            d = scratch / "d100"
            d.mkdir()
            names = [f"e{i:03d}" for i in range(p.rename_files)]
            for n in names:
                (d / n).write_bytes(_PATTERN[:SMALL])
            expect = dict.fromkeys(names, SMALL)
            if m.async_uploads:
                m.wait_stored(f"{rel}/d100", expect)
            t0 = time.monotonic()
            os.rename(d, scratch / "d100-renamed")
            t1 = time.monotonic()
            if m.async_uploads:
                t1 = m.wait_stored(f"{rel}/d100-renamed", expect)
            return round(t1 - t0, 3)

        self._measure(m, "seq_write", seq_write)
        self._measure(m, "create_small", create_small)
        self._measure(m, "rename_file", rename_file)
        self._measure(m, "rename_dir", rename_dir)
        # untimed: the scratch space goes (fake-gcs-server keeps objects in RAM)
        try:
            guarded(m, self.p.timeout, f"{self.c.name} cleanup", lambda: shutil.rmtree(scratch))
        except (OSError, TimeoutError) as exc:
            self.out.notes["cleanup"] = f"rm -r {rel} failed: {exc}"

    # -- read sessions -----------------------------------------------------------------

    def _read_session(self, m: Mount) -> None:
        assert m.root is not None
        path = m.root / "ds" / "big.bin"

        def seq_read() -> float:
            cpu0 = self._cpu(m)
            t0 = time.monotonic()
            n = _read_file(path)
            t1 = time.monotonic()
            cpu1 = self._cpu(m)
            if n != self.p.size:
                raise RuntimeError(f"read {n} bytes of {self.p.size}")
            if cpu0 is not None and cpu1 is not None:
                self.out.values["cpu_read"] = round(cpu1 - cpu0, 2)
            return round(n / 1e6 / (t1 - t0), 1)

        self._measure(m, "seq_read", seq_read)

    def _ls_session(self, m: Mount) -> None:
        assert m.root is not None
        many = m.root / "ds" / "many"

        def ls() -> float:
            t0 = time.monotonic()
            proc = subprocess.run(["ls", "-l", str(many)], capture_output=True,
                                  timeout=self.p.timeout)
            t1 = time.monotonic()
            if proc.returncode != 0:
                raise RuntimeError(f"ls -l failed: {proc.stderr.decode()[-300:]}")
            lines = proc.stdout.count(b"\n") - 1  # "total N"
            if lines != self.p.entries:
                raise RuntimeError(f"ls -l listed {lines} entries, not {self.p.entries}")
            return round(t1 - t0, 3)

        names = [many / f"f{i:05d}" for i in range(min(self.p.stats, self.p.entries))]

        def stat_warm() -> float:
            for path in names:  # warm-up: every tool's own caches hold these now
                os.stat(path)
            # past the kernel's 1 s attribute and entry timeouts (every contestant's
            # default), so each stat reaches the tool's own cache
            time.sleep(1.5)
            t0 = time.monotonic()
            for path in names:
                os.stat(path)
            return round(len(names) / (time.monotonic() - t0), 1)

        def ls_warm() -> float:
            # a run of a few tens of ms swings by as much as the tools differ: the median of 5
            return sorted(ls() for _ in range(5))[2]

        self._measure(m, "ls_cold", ls)
        self._measure(m, "ls_warm", ls_warm)
        self._measure(m, "stat_warm", stat_warm)

    def _fio_session(self, m: Mount) -> None:
        assert m.root is not None
        path = m.root / "ds" / "big.bin"

        def fio() -> float:
            args = ["fio", "--name=randread", f"--filename={path}", "--rw=randread",
                    "--bs=4k", "--ioengine=psync", f"--numjobs={self.p.fio_jobs}",
                    "--group_reporting", "--time_based", f"--runtime={self.p.fio_seconds}",
                    f"--size={self.p.size}", "--readonly", "--invalidate=1",
                    "--output-format=json"]
            proc = subprocess.run(args, capture_output=True, text=True,
                                  timeout=self.p.fio_seconds + 300)
            if proc.returncode != 0:
                raise RuntimeError(f"fio failed: {proc.stderr[-500:]}")
            job = json.loads(proc.stdout[proc.stdout.index("{"):])["jobs"][0]["read"]
            self.out.notes["fio_lat_ms_mean"] = round(job["clat_ns"]["mean"] / 1e6, 3)
            return round(float(job["iops"]), 1)

        self._measure(m, "fio_rand", fio)

    # -- the direct client (Manta ceiling) ---------------------------------------------

    def _direct_write(self, m: Mount) -> None:
        assert isinstance(m, DirectMount)
        base = f"{m.base}/w-{self.c.name}"

        def seq_write() -> float:
            from bench.stores import manta_mkdir

            manta_mkdir(m.client, base)
            t0 = time.monotonic()
            r = m.client.put(f"{base}/big.bin", content=_chunks(self.p.size),
                             headers={"Content-Length": str(self.p.size),
                                      "Content-Type": "application/octet-stream"})
            r.raise_for_status()
            t1 = time.monotonic()
            m.client.delete(f"{base}/big.bin")
            m.client.delete(base)
            return round(self.p.size / 1e6 / (t1 - t0), 1)

        if self.wanted("seq_write"):
            self._measure(m, "seq_write", seq_write)

    def _direct_read(self, m: Mount) -> None:
        assert isinstance(m, DirectMount)

        def seq_read() -> float:
            t0 = time.monotonic()
            n = 0
            with m.client.stream("GET", f"{m.base}/ds/big.bin") as r:
                r.raise_for_status()
                for chunk in r.iter_raw(BLOCK):
                    n += len(chunk)
            t1 = time.monotonic()
            if n != self.p.size:
                raise RuntimeError(f"read {n} bytes of {self.p.size}")
            return round(n / 1e6 / (t1 - t0), 1)

        if self.wanted("seq_read"):
            self._measure(m, "seq_read", seq_read)
