"""``python bench/run.py``: storefs and its peers side by side, one table per store.

See bench/README.md for what each row measures and how the contestants are run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.contestants import Contestant, abort_fuse, contestants_for
from bench.scenarios import Outcome, Params, Runner, rows
from bench.servers import Servers
from bench.stores import make_staging, open_store, upload_dataset

HERE = Path(__file__).resolve().parent
STORES = ("file", "s3", "s3-moto", "manta", "gcs", "swift")
DEFAULT_STORES = "file,s3,manta,gcs,swift"
#: which server each store needs (a server is stopped once no later store needs it)
SERVER_OF = {"s3": "swift", "swift": "swift", "s3-moto": "moto", "gcs": "gcs",
             "manta": "manta"}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([KMGT]?)(i?B)?", text.strip(), re.IGNORECASE)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256M, 1G)")
    power = "_KMGT".index(str(m.group(2)).upper() or "_")
    return int(m.group(1)) << (10 * power)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__)
    p.add_argument("--stores", default=DEFAULT_STORES,
                   help=f"comma-separated, of {','.join(STORES)} (default {DEFAULT_STORES})")
    p.add_argument("--size", type=parse_size, default=None,
                   help="sequential read/write size (default 1G; --quick: 256M)")
    p.add_argument("--files", type=int, default=1000, help="small files to create (1000)")
    p.add_argument("--entries", type=int, default=None,
                   help="entries of the listed directory (default 10000; --quick: 2000)")
    p.add_argument("--fio-seconds", type=int, default=None,
                   help="fio run time (default 30; --quick: 10)")
    p.add_argument("--quick", action="store_true", help="256 MiB and 2,000 entries")
    p.add_argument("--contestants", default="",
                   help="only these contestants (comma-separated names, e.g. storefs,s3fs)")
    p.add_argument("--scenarios", default="",
                   help="only these scenarios (e.g. seq_read,ls_cold; see README)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="scratch space (default: a new directory under /var/tmp, removed "
                        "at the end)")
    p.add_argument("--keep", action="store_true", help="keep the workdir (logs) at the end")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds one scenario may take before its mount is aborted")
    p.add_argument("--output", type=Path, default=None, help="JSON file (default bench/results/)")
    args = p.parse_args(argv)
    args.size = args.size or (256 << 20 if args.quick else 1 << 30)
    args.entries = args.entries or (2000 if args.quick else 10000)
    args.fio_seconds = args.fio_seconds or (10 if args.quick else 30)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    bad = [s for s in stores if s not in STORES]
    if bad:
        p.error(f"unknown store(s) {', '.join(bad)}; choose from {', '.join(STORES)}")
    args.store_list = stores
    return args


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "missing"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def machine() -> dict[str, Any]:
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "mem_gib": round(int(mem) / 1024 / 1024, 1),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "versions": {
            "storefs": _version([sys.executable, "-m", "storefs", "--version"]),
            "rclone": _version(["rclone", "version"]),
            "s3fs": _version(["s3fs", "--version"]),
            "fio": _version(["fio", "--version"]),
            "python": platform.python_version(),
        },
    }


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def table(store: str, params: Params, names: list[str], outcomes: dict[str, Outcome]) -> str:
    header = ["scenario", *names]
    body: list[list[str]] = []
    for row in rows(params):
        cells = []
        for n in names:
            o = outcomes[n]
            if row.key in o.errors:
                cells.append("ERROR")
            else:
                cells.append(fmt(o.values.get(row.key)))
        if any(c != "—" for c in cells):
            body.append([row.label, *cells])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [c.ljust(w) if i == 0 else c.rjust(w)
                  for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    out = [f"### {store}", "", line(header),
           "|" + "|".join(("-" * (w + 1) + ":") if i else "-" * (w + 2)
                          for i, w in enumerate(widths)) + "|"]
    out += [line(r) for r in body]
    sf = outcomes.get("storefs")
    if sf is not None and sf.requests:
        out += ["", "storefs requests per scenario (from `storefs status --json`):", ""]
        for key, counts in sf.requests.items():
            shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
            out.append(f"- {key}: {shown}")
    errs = [(n, k, e) for n, o in outcomes.items() for k, e in o.errors.items()]
    if errs:
        out += ["", "errors:"]
        for n, k, e in errs:
            out.append(f"- {n} {k}: {e.splitlines()[0]}")
    return "\n".join(out)


def run_store(name: str, servers: Servers, workdir: Path, ds: Path, params: Params,
              only_contestants: set[str], only: set[str] | None) -> dict[str, Any]:
    store = open_store(name, servers, workdir)
    conf = workdir / f"rclone-{name}.conf"
    conf.write_text(store.rclone_config)
    print(f"[bench] {name}: uploading the data set", file=sys.stderr, flush=True)
    upload_s = upload_dataset(store, ds, conf)
    contestants: list[Contestant] = [
        c for c in contestants_for(store, workdir, conf)
        if not only_contestants or c.name in only_contestants]
    outcomes: dict[str, Outcome] = {}
    for c in contestants:
        print(f"[bench] {name}: {c.name}", file=sys.stderr, flush=True)
        outcomes[c.name] = Runner(c, params, only).run()
    text = table(name, params, [c.name for c in contestants], outcomes)
    print(text + "\n", flush=True)
    return {
        "source": store.source,
        "dataset_upload_s": round(upload_s, 1),
        "contestants": {c.name: {"kind": c.kind, "mode": c.mode} for c in contestants},
        "results": {n: {"values": o.values, "errors": o.errors, "requests": o.requests,
                        "notes": o.notes} for n, o in outcomes.items()},
        "table": text,
    }


def _detach_leftovers(workdir: Path) -> None:
    """Abort any mount still alive under ``workdir`` (so nothing outlives the run and
    removing the workdir cannot walk into a store)."""
    prefix = os.path.realpath(workdir) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for point in points:
        print(f"[bench] {point} still mounted: aborting it", file=sys.stderr)
        abort_fuse(Path(point))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    params = Params(size=args.size, files=args.files, entries=args.entries,
                    fio_seconds=args.fio_seconds, timeout=args.timeout)
    only = {s.strip() for s in args.scenarios.split(",") if s.strip()} or None
    only_contestants = {s.strip() for s in args.contestants.split(",") if s.strip()}
    if os.geteuid() != 0:
        print("[bench] warning: not root, so caches cannot be dropped: cold rows are warm",
              file=sys.stderr)
    for tool in ("rclone", "s3fs", "fio"):
        if shutil.which(tool) is None:
            print(f"[bench] {tool} missing: run bash bench/install-peers.sh", file=sys.stderr)
            return 2
    made_workdir = args.workdir is None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="storefs-bench-", dir="/var/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    out_file = args.output or HERE / "results" / (
        f"{started:%Y%m%d-%H%M%S}-{'-'.join(args.store_list)}.json")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "command": "python bench/run.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "params": vars(params), "machine": machine(), "workdir": str(workdir), "stores": {},
    }
    print(f"[bench] workdir {workdir}; results in {out_file}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        with Servers(workdir) as servers:
            ds = make_staging(workdir / "staging", params.size, params.entries)
            for i, name in enumerate(args.store_list):
                try:
                    report["stores"][name] = run_store(name, servers, workdir, ds, params,
                                                       only_contestants, only)
                except Exception as exc:
                    print(f"[bench] {name} failed: {type(exc).__name__}: {exc}",
                          file=sys.stderr, flush=True)
                    report["stores"][name] = {"error": f"{type(exc).__name__}: {exc}"}
                server = SERVER_OF.get(name)
                later = {SERVER_OF.get(s) for s in args.store_list[i + 1:]}
                if server is not None and server not in later:
                    servers.stop(server)
                report["elapsed_s"] = round(time.monotonic() - t0, 1)
                out_file.write_text(json.dumps(report, indent=2))
    except KeyboardInterrupt:
        print("[bench] interrupted: mounts unmounted, servers stopped", file=sys.stderr)
        report["interrupted"] = True
        out_file.write_text(json.dumps(report, indent=2))
        return 130
    finally:
        _detach_leftovers(workdir)
        if made_workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    out_file.write_text(json.dumps(report, indent=2))
    print(f"[bench] done in {time.monotonic() - t0:.0f}s; results in {out_file}",
          file=sys.stderr)
    return 0
