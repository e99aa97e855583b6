"""The ``storefs`` command: mount, umount, status.

Every failure the user can cause (a malformed source, an unknown option, a missing
mountpoint, refused credentials...) ends with one line ``storefs: <reason>`` on stderr
and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

from storefs import __version__
from storefs.errors import ConfigError, StorefsError

log = logging.getLogger("storefs")

EXAMPLES = """\
sources:
  file:///abs/path          a local directory (the embedded default)
  mem://NAME                an in-memory store (gone at unmount)
  manta:/LOGIN/stor[/PATH]  Joyent Manta (MANTA_URL, MANTA_USER, MANTA_KEY_ID)
  s3://BUCKET[/PREFIX]      AWS S3 or any S3-compatible store
  gs://BUCKET[/PREFIX]      Google Cloud Storage
  swift://CONTAINER[/PATH]  OpenStack Swift (OS_* variables of an RC file)
  https://HOST/PATH/        a read-only HTTP(S) tree

examples:
  storefs mount file:///srv/data ~/mnt
  storefs mount s3://bucket/prefix ~/mnt -o endpoint=http://127.0.0.1:9000
  storefs status
  storefs umount ~/mnt
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="storefs",
        description="Mount object stores as a POSIX filesystem through FUSE.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"storefs {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    m = sub.add_parser("mount", help="mount a store on a directory",
                       description="Mount SOURCE on MOUNTPOINT; returns once the mount is "
                       "live (or with a one-line reason why it could not be).",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("source", metavar="SOURCE")
    m.add_argument("mountpoint", metavar="MOUNTPOINT")
    m.add_argument("-o", dest="options", action="append", default=[], metavar="OPT[,OPT...]",
                   help="mount options (storefs mount --list-options SOURCE lists them)")
    m.add_argument("-f", "--foreground", action="store_true",
                   help="stay in the foreground (logs to stderr)")
    m.add_argument("--read-only", action="store_true", help="mount read-only (like -o ro)")
    m.add_argument("--cache-dir", metavar="DIR", help="page cache and pending uploads")
    m.add_argument("--cache-size", metavar="SIZE", help="page cache size cap, e.g. 2G")
    m.add_argument("--log-file", metavar="FILE", help="log here (daemon default: the cache dir)")
    m.add_argument("-v", "--verbose", action="count", default=0,
                   help="more logging (-vv: debug)")

    lo = sub.add_parser("options", help="list the mount options for a source")
    lo.add_argument("source", metavar="SOURCE")

    u = sub.add_parser("umount", help="upload pending writes, then unmount",
                       description="Upload the mount's pending writes, then unmount it.")
    u.add_argument("mountpoint", metavar="MOUNTPOINT")
    u.add_argument("--timeout", type=float, default=600.0,
                   help="seconds to wait for pending uploads (default 600)")
    u.add_argument("-z", "--lazy", action="store_true",
                   help="detach now even if busy (pending uploads still finish)")

    s = sub.add_parser("status", help="show mounts, pending uploads, cache use")
    s.add_argument("mountpoint", metavar="MOUNTPOINT", nargs="?")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "mount":
            return cmd_mount(args)
        if args.command == "umount":
            return cmd_umount(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "options":
            return cmd_options(args)
        _parser().print_help()
        return 2
    except StorefsError as exc:
        print(f"storefs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# -- mount ---------------------------------------------------------------------------------

def prepare_mount(args: argparse.Namespace) -> Any:
    """Everything that can be checked without the network, before daemonising."""
    from storefs.backends import backend_module, backend_options
    from storefs.mount import MountRequest, check_cache_dir
    from storefs.options import parse_options, split_options
    from storefs.source import parse_source

    source = parse_source(args.source)
    mountpoint = Path(args.mountpoint).expanduser()
    try:
        st = os.stat(mountpoint)
    except FileNotFoundError:
        raise ConfigError(f"mountpoint {mountpoint} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise ConfigError(f"{mountpoint} is a dead mount (its daemon is gone): "
                              f"run storefs umount {mountpoint} first") from None
        raise ConfigError(f"mountpoint {mountpoint}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"mountpoint {mountpoint} is not a directory")
    mountpoint = mountpoint.resolve()
    from storefs.unmount import is_mounted

    if is_mounted(mountpoint):
        raise ConfigError(f"{mountpoint} is already a mount point (storefs umount it first)")
    if not os.access(mountpoint, os.W_OK) and os.geteuid() != 0:
        raise ConfigError(f"mountpoint {mountpoint} is not writable by you")
    backend_module(source)  # a missing SDK is reported now, not after forking
    items: list[str] = []
    for opt in args.options:
        items += split_options(opt)
    if args.read_only:
        items.append("ro")
    if args.cache_dir:
        items.append(f"cache_dir={args.cache_dir}")
    if args.cache_size:
        items.append(f"cache_size={args.cache_size}")
    options = parse_options(items, backend_options(source), source.scheme)
    check_cache_dir(options.cache_dir())
    request = MountRequest(source, mountpoint, options)
    # build (without network) once, so option and credential-file errors show now
    from storefs.mount import build_backend

    build_backend(request)
    return request


def cmd_mount(args: argparse.Namespace) -> int:
    from storefs import logs

    request = prepare_mount(args)
    logs.add_env_secrets()
    from storefs.config import is_secret

    for name, value in request.options.backend.items():
        if is_secret(name):
            logs.add_secret(value)
    log_file = Path(args.log_file).expanduser() if args.log_file else None
    _check_log_file(log_file or request.options.cache_dir() / "storefs.log")

    def serve(ready: Any) -> int:
        import trio

        from storefs.mount import run, tune_malloc

        if not args.foreground and log_file is None:
            default_log = request.options.cache_dir() / "storefs.log"
            logs.setup(args.verbose, default_log, foreground=False)
        else:
            logs.setup(args.verbose, log_file, foreground=args.foreground)
        # private files (cache, spool, logs, sockets) are created 0600 explicitly; files of
        # a file:// store get ordinary modes, like files other tools make there
        os.umask(0o022)
        tune_malloc()
        return trio.run(run, request, ready)

    if args.foreground:
        def ready(error: str | None) -> None:
            if error is not None:
                print(f"storefs: {error}", file=sys.stderr)

        return serve(ready)
    from storefs.daemon import daemonize

    return daemonize(serve)


def _check_log_file(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
    except OSError as exc:
        raise ConfigError(f"log file {path}: {exc.strerror}") from exc


def cmd_options(args: argparse.Namespace) -> int:
    from storefs.backends import backend_options
    from storefs.options import describe_options
    from storefs.source import parse_source

    print(describe_options(backend_options(parse_source(args.source))))
    return 0


# -- umount --------------------------------------------------------------------------------

def cmd_umount(args: argparse.Namespace) -> int:
    from storefs.control import ControlUnavailable, request
    from storefs.unmount import is_mounted, unmount

    mountpoint = Path(args.mountpoint).expanduser()
    if not is_mounted(mountpoint):
        raise StorefsError(f"{mountpoint} is not mounted")
    if args.lazy:
        unmount(mountpoint, lazy=True)
        return 0
    try:
        print(f"storefs: waiting for pending uploads of {mountpoint}...", file=sys.stderr)
        result = request(mountpoint, {"cmd": "umount", "timeout": args.timeout},
                         timeout=args.timeout + 30,
                         on_progress=lambda line: print(f"storefs: {line}", file=sys.stderr))
    except ControlUnavailable:
        # no daemon (it died: "Transport endpoint is not connected"): just detach
        unmount(mountpoint)
        print(f"storefs: unmounted {mountpoint} (its daemon was not running)",
              file=sys.stderr)
        return 0
    if not result.get("ok"):
        raise StorefsError(str(result.get("error", "unmount failed")))
    _wait_gone(mountpoint)
    return 0


def _wait_gone(mountpoint: Path, timeout: float = 30.0) -> None:
    import time

    from storefs.unmount import is_mounted

    deadline = time.monotonic() + timeout
    while is_mounted(mountpoint) and time.monotonic() < deadline:
        time.sleep(0.05)


# -- status --------------------------------------------------------------------------------

def cmd_status(args: argparse.Namespace) -> int:
    from storefs.control import ControlUnavailable, all_sockets, request

    def status_of(mountpoint: Path | None, sock: Path | None = None) -> dict[str, Any]:
        reply = request(mountpoint, {"cmd": "status"}, path=sock, timeout=10)
        status = reply.get("status")
        if not isinstance(status, dict):  # e.g. a daemon in the middle of unmounting
            raise StorefsError(f"the storefs daemon for {mountpoint or sock} gave no status: "
                               f"{reply.get('error', 'no reason given')}")
        return status

    results: list[dict[str, Any]] = []
    if args.mountpoint:
        results.append(status_of(Path(args.mountpoint).expanduser()))
    else:
        for sock in all_sockets():
            try:
                results.append(status_of(None, sock))
            except (ControlUnavailable, StorefsError):
                continue  # gone, going, or not answering: list the ones that are there
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    if not results:
        print("no storefs mounts")
        return 0
    for st in results:
        _print_status(st)
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _print_status(st: dict[str, Any]) -> None:
    print(f"{st['source']} on {st['mountpoint']} (pid {st['pid']}, up {st['uptime']:.0f}s)")
    pending = st.get("pending", [])
    print(f"  pending uploads: {len(pending)}"
          + (f" ({_human(sum(p['size'] for p in pending))})" if pending else ""))
    for p in pending[:20]:
        err = f" - last error: {p['error']}" if p.get("error") else ""
        print(f"    {p['key']} ({_human(p['size'])}){err}")
    cache = st.get("cache", {})
    if cache:
        print(f"  cache: {_human(cache['bytes'])} of {_human(cache['capacity'])} "
              f"in {st['cache_dir']}, hits {cache['hits']}, misses {cache['misses']}")
    reqs = st.get("requests", {})
    counts = reqs.get("requests", {})
    if counts:
        total = sum(counts.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"  requests: {total} ({detail})")
    print(f"  errors: {reqs.get('retry_failures', 0)} failed after retries, "
          f"{reqs.get('retries', 0)} retried, "
          f"{st.get('writeback', {}).get('failures', 0)} upload failures")
