"""Running one mount: build the backend, caches and filesystem, serve FUSE, shut down cleanly.

``serve(request, ready)`` is the daemon's whole life, inside one trio nursery:

1. open and ``connect`` the backend (credentials are checked here: a failure is reported
   through ``ready`` and the mount never happens);
2. lock the mount's cache directory and adopt the uploads a previous mount left;
3. ``pyfuse3.init`` mounts; once the kernel answers a ``stat`` of the mountpoint the
   mount is live: ``ready(None)``, and ``READY=1`` to systemd;
4. requests are served until one of: the filesystem is unmounted from outside
   (``fusermount3 -u``), ``storefs umount`` over the control socket, or SIGTERM/SIGINT;
5. pending uploads are finished (``STOPPING=1`` to systemd; a second signal stops waiting,
   leaving them in the journal for the next mount), and the mount goes away.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import logging
import os
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from storefs import __version__
from storefs.backends import open_backend
from storefs.backends.base import Backend
from storefs.backends.retrying import RetryingBackend, retry_deadline
from storefs.cache.chunks import ChunkCache
from storefs.cache.fetch import Fetcher
from storefs.cache.writeback import WriteBack
from storefs.control import serve as serve_control
from storefs.control import socket_path
from storefs.errors import ConfigError, StorefsError
from storefs.fs.attrstore import AttrStore, open_attr_store
from storefs.fs.filesystem import Filesystem, FsOptions
from storefs.fs.posix_meta import Defaults
from storefs.fuse import request_wait
from storefs.fuse.operations import Operations
from storefs.notify import notify
from storefs.options import MountOptions
from storefs.source import Source
from storefs.unmount import unmount

log = logging.getLogger(__name__)

#: seconds SIGTERM waits for pending uploads before giving up (they stay in the journal)
STOP_TIMEOUT = 600.0


@dataclass
class MountRequest:
    source: Source
    mountpoint: Path
    options: MountOptions


def cache_root_for(source: Source, options: MountOptions) -> Path:
    return options.cache_dir()


def lock_cache_dir(root: Path, source: Source) -> tuple[Path, int]:
    """The cache directory of ``source`` under ``root``, locked for this process.

    Two mounts of one store cannot share pending uploads, so a second concurrent mount of
    the same source gets the next free directory (``<id>-2`` ...)."""
    digest = hashlib.sha256(source.raw.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cache directory {root}: {exc.strerror}") from exc
    for n in range(1, 100):
        d = root / (digest if n == 1 else f"{digest}-{n}")
        try:
            d.mkdir(mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)
            fd = os.open(d / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"cache directory {d}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        (d / "source").write_text(source.raw + "\n")
        return d, fd
    raise ConfigError(f"cache directory {root}: too many mounts of {source.raw}")


def check_cache_dir(root: Path) -> None:
    """Create the cache directory, or refuse it with a one-line reason (before
    daemonising)."""
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"cache directory {root} is not a directory") from None
    except OSError as exc:
        reason = "not a directory" if exc.errno == errno.ENOTDIR else exc.strerror
        raise ConfigError(f"cache directory {root}: {reason}") from exc
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"cache directory {root} is not writable")


def fs_options(options: MountOptions) -> FsOptions:
    chunk = options.integer("chunk_size")
    force_uid = options.optional_int("uid")
    force_gid = options.optional_int("gid")
    return FsOptions(
        defaults=Defaults(
            uid=os.getuid() if force_uid is None else force_uid,
            gid=os.getgid() if force_gid is None else force_gid,
            file_mode=options.integer("file_mode"),
            dir_mode=options.integer("dir_mode"),
        ),
        attr_timeout=options.number("attr_timeout"),
        entry_timeout=options.number("entry_timeout"),
        negative_timeout=options.number("negative_timeout"),
        dir_timeout=options.number("dir_timeout"),
        read_only=options.read_only,
        readahead_pages=max(1, options.integer("readahead") // chunk),
        force_uid=force_uid,
        force_gid=force_gid,
        umask=options.optional_int("umask"),
        sync_close=bool(options.get("sync_close")),
    )


def fuse_options(request: MountRequest) -> set[str]:
    opts = {f"fsname={request.source.raw.replace(',', '_')}", "subtype=storefs"}
    opts.update(o for o in request.options.kernel if not o.startswith(("fsname=", "subtype=")))
    opts.update(o for o in request.options.kernel if o.startswith(("fsname=", "subtype=")))
    if request.options.read_only:
        opts.add("ro")
    return opts


def read_only_store(request: MountRequest, backend: Backend) -> None:
    """A store that refuses every write (https://) is mounted read-only for the kernel
    too, so `mount` shows ro and tools see EROFS before asking."""
    if backend.capabilities.read_only:
        request.options.read_only = True


#: glibc's mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: arenas for the daemon: glibc makes up to 8 per core, one per thread that contends,
#: and each keeps freed part buffers of its own (measured on S3: peak RSS 188 -> 145 MiB
#: with 2, at the same speed)
MALLOC_ARENAS = 2
#: blocks at least this large are mmapped and given back to the kernel when freed.  glibc
#: raises its threshold to the size of every mmapped block freed, so after the first
#: upload part (8-32 MiB) every part and read-ahead run came from the heap, whose freed
#: holes it keeps: a Swift mount's RSS grew by a part's size per part to 195 MiB over
#: a 256 MiB write (malloc_trim gave 100 MiB back).  A fixed threshold turns the raising
#: off; 2 MiB keeps 1 MiB pages and FUSE write buffers, reused all the time, in the heap.
MALLOC_MMAP_THRESHOLD = 2 * 1024 * 1024
#: free memory at the top of the heap beyond this goes back to the kernel.  Fixing the
#: mmap threshold also fixes this one at its 128 KiB default, so each freed 1 MiB FUSE
#: write buffer was given back and the next one faulted its 256 pages in again: a third
#: of the trio thread's time in a Manta write (1 MiB writes: 240 -> 320 MB/s, daemon CPU
#: 1.1 -> 0.8 s per 256 MiB, the same peak RSS)
MALLOC_TRIM_THRESHOLD = 16 * 1024 * 1024


#: pages the chunk cache keeps in memory: those being read now (the kernel reads a page in
#: several requests).  Pages read ahead are served from their files (the kernel's page
#: cache) once out of it: a window's worth in memory (48 MiB) was a third of an S3
#: mount's peak RSS, for the same read speed.  Without room on disk for them (a tiny,
#: disabled or full cache) memory keeps a read-ahead window more.
MEMORY_PAGES = 8


def tune_malloc() -> None:
    """Cap glibc's malloc arenas and fix its mmap and trim thresholds before worker threads start
    (a no-op on other libcs); a setting the user made in the environment wins."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        if "MALLOC_ARENA_MAX" not in os.environ:
            libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
            libc.mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
        if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
            libc.mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)


def _raise_nofile_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _tune_kernel_readahead(dev: int, size: int) -> None:
    """The kernel reads ahead only 128 KiB on a FUSE mount by default; a larger window
    keeps more requests in flight for sequential readers.  Needs root; best effort.
    (``dev`` comes from a stat done in a thread: a stat of the mountpoint on the trio
    thread would wait for this very loop to answer it.)"""
    try:
        path = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
        path.write_text(str(max(128, size // 1024)))
    except OSError as exc:
        log.debug("cannot set kernel read-ahead: %s", exc)


class Mount:
    """One running mount (see the module docstring)."""

    def __init__(self, request: MountRequest, backend: Backend) -> None:
        self.request = request
        self.backend = backend
        self.started = time.time()
        self.fs: Filesystem | None = None
        self.chunks: ChunkCache | None = None
        self.cache_dir: Path | None = None
        self.attrs: AttrStore | None = None
        self._stop = trio.Event()
        self._unmounted_outside = False
        self._stopping = False
        self.mounted = False
        self.request_wait: request_wait.QueuedRequestWait | None = None

    async def serve(self, ready: Callable[[str | None], None]) -> int:
        req = self.request
        opts = req.options
        with retry_deadline(opts.number("retry_timeout")):
            try:
                await self.backend.connect()
            except StorefsError as exc:
                ready(str(exc))
                return 1
            root = cache_root_for(req.source, opts)
            try:
                self.cache_dir, lock_fd = lock_cache_dir(root, req.source)
            except StorefsError as exc:
                ready(str(exc))
                return 1
            try:
                return await self._serve(ready)
            finally:
                os.close(lock_fd)

    async def _serve(self, ready: Callable[[str | None], None]) -> int:
        req = self.request
        opts = req.options
        assert self.cache_dir is not None
        chunk = opts.integer("chunk_size")
        readahead = opts.integer("readahead")
        # a disk cache smaller than two read-ahead windows cannot keep pages until their
        # reader comes: memory keeps a window then
        self.chunks = ChunkCache(self.cache_dir / "chunks", opts.integer("cache_size"),
                                 memory_pages=MEMORY_PAGES,
                                 diskless_pages=MEMORY_PAGES + max(1, readahead // chunk),
                                 disk_floor=2 * readahead)
        fetcher = Fetcher(self.backend, self.chunks, chunk, opts.integer("read_parallel"))
        writeback = WriteBack(self.backend, fetcher, self.cache_dir / "dirty",
                              parallel=opts.integer("write_parallel"),
                              stream=bool(opts.get("stream_uploads")))
        self.attrs = open_attr_store(self.cache_dir / "attrs.sqlite")
        fs = self.fs = Filesystem(self.backend, fs_options(opts), fetcher, writeback,
                                  self.attrs)
        try:
            await fs.start()
        except StorefsError as exc:
            ready(str(exc))
            return 1
        _raise_nofile_limit()
        read_only_store(req, self.backend)
        ops = Operations(fs)
        # from pyfuse3.init on, touching the mountpoint from this thread (even realpath)
        # waits for this very loop to answer: resolve everything about it before
        control = socket_path(req.mountpoint)
        try:
            pyfuse3.init(ops, str(req.mountpoint), fuse_options(req))
        except RuntimeError as exc:
            ready(f"cannot mount on {req.mountpoint}: {exc} (is it busy or not empty?)")
            return 1
        self.mounted = True
        self.request_wait = request_wait.install()
        code = 0
        try:
            async with trio.open_nursery() as nursery:
                fetcher.start(nursery)
                writeback.start(nursery)
                fs.attach(nursery, pyfuse3.notify_store if opts.get("kernel_pages") else None)
                await nursery.start(serve_control, control, self._control)
                nursery.start_soon(self._fuse_main, nursery)
                st = await trio.to_thread.run_sync(os.stat, req.mountpoint)
                _tune_kernel_readahead(st.st_dev, opts.integer("kernel_readahead"))
                log.info("storefs %s: %s mounted on %s", __version__, req.source.raw,
                         req.mountpoint)
                ready(None)
                notify("READY=1", f"STATUS=serving {req.source.raw}")
                nursery.start_soon(self._signals, nursery)
                await self._stop.wait()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                code = await self._shutdown()
        return code

    async def _fuse_main(self, nursery: trio.Nursery) -> None:
        try:
            await pyfuse3.main()
        finally:
            request_wait.uninstall()
            if not self._stopping:
                # unmounted from outside (fusermount3 -u, umount)
                self._unmounted_outside = True
            self._stop.set()

    async def _signals(self, nursery: trio.Nursery) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
            async for signum in sigs:
                if signum == signal.SIGHUP:
                    continue
                log.info("signal %d: uploading pending writes, then unmounting", signum)
                notify("STOPPING=1", "STATUS=uploading pending writes")
                await self._drain_then_stop(sigs)
                return

    async def _drain_then_stop(self, sigs: Any) -> None:
        assert self.fs is not None
        with trio.CancelScope() as scope:

            async def second_signal() -> None:
                async for _ in sigs:
                    log.warning("second signal: leaving pending uploads for the next mount")
                    scope.cancel()
                    return

            async with trio.open_nursery() as n:
                n.start_soon(second_signal)
                await self._drain(trio.current_time() + STOP_TIMEOUT)
                n.cancel_scope.cancel()
        self._stopping = True
        with contextlib.suppress(Exception):
            pyfuse3.terminate()
        self._stop.set()

    async def _drain(self, deadline: float,
                     progress: Callable[[str], None] = lambda line: None) -> list[Any]:
        assert self.fs is not None
        left = await self.fs.writeback.drain(self.fs.pending(), deadline, progress)
        for df in left:
            log.warning("%s: not uploaded yet; the next mount will finish it (%s)", df.key,
                        df.dir)
        return left

    async def _shutdown(self) -> int:
        code = 0
        if self.fs is not None and self.fs.pending() and self._unmounted_outside:
            # unmounted from outside: the files are closed, finish their uploads
            with trio.move_on_after(STOP_TIMEOUT):
                await self._drain(trio.current_time() + STOP_TIMEOUT)
        if self.mounted:
            try:
                pyfuse3.close(unmount=not self._unmounted_outside)
            except Exception as exc:  # pragma: no cover - defensive
                log.warning("closing the FUSE session: %s", exc)
        if self.fs is not None and self.fs.pending():
            code = 3
        if self.attrs is not None:
            self.attrs.close()
        with contextlib.suppress(Exception):
            await self.backend.aclose()
        return code

    # -- control channel --------------------------------------------------------------

    async def _control(self, request: dict[str, Any],
                       send: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd in ("flush", "umount"):
            lines: list[str] = []

            def progress(line: str) -> None:
                lines.append(line)

            async def pump() -> None:
                while True:
                    while lines:
                        await send({"progress": lines.pop(0)})
                    await trio.sleep(0.05)

            async with trio.open_nursery() as n:
                n.start_soon(pump)
                left = await self._drain(trio.current_time() + float(
                    request.get("timeout", STOP_TIMEOUT)), progress)
                n.cancel_scope.cancel()
            for line in lines:
                await send({"progress": line})
            if left:
                return {"ok": False, "error": f"{len(left)} file(s) could not be uploaded; "
                        "they stay pending (see storefs status)"}
            if cmd == "umount":
                try:
                    await trio.to_thread.run_sync(unmount, self.request.mountpoint)
                except StorefsError as exc:
                    return {"ok": False, "error": str(exc)}
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def status(self) -> dict[str, Any]:
        fs = self.fs
        stats: dict[str, Any] = {
            "source": self.request.source.raw,
            "mountpoint": str(self.request.mountpoint),
            "pid": os.getpid(),
            "version": __version__,
            "store": self.backend.describe(),
            "uptime": round(time.time() - self.started, 1),
            "cache_dir": str(self.cache_dir),
            "requests": self.backend.statistics(),
        }
        if fs is not None:
            stats["filesystem"] = fs.statistics()
            stats["pending"] = [df.describe() for df in fs.pending()]
            stats["writeback"] = fs.writeback.statistics()
            stats["reads"] = fs.fetcher.statistics()
        if self.chunks is not None:
            stats["cache"] = self.chunks.statistics()
        if self.request_wait is not None:
            stats["fuse_waits"] = self.request_wait.statistics()
        if self.attrs is not None:
            stats["attribute_record"] = {"hits": self.attrs.hits, "misses": self.attrs.misses}
        return stats


def build_backend(request: MountRequest) -> Backend:
    inner = open_backend(request.source, request.options.backend)
    return RetryingBackend(inner)


async def run(request: MountRequest, ready: Callable[[str | None], None]) -> int:
    try:
        backend = build_backend(request)
    except StorefsError as exc:
        ready(str(exc))
        return 1
    return await Mount(request, backend).serve(ready)


__all__ = ["Mount", "MountRequest", "check_cache_dir", "errno", "run"]
