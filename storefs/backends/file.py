"""``file:///abs/path``: a local directory used as a store.

Real directories map to directories, objects to regular files, symlinks (objects whose
metadata marks them ``S_IFLNK``) to real symlinks, so the directory stays useful to every
other tool.  POSIX metadata that the backing file cannot carry itself (mode, owner, xattrs
of the mounted view) lives in one extended attribute, ``user.storefs.meta`` (JSON of the
user metadata), which other tools never trip over; the store's mtime is the backing file's.

Writes are atomic: data goes to a hidden temporary file in the same directory (or the
spool is hard-linked there), then renamed over the target, so a crash never leaves a
half-written object.  ``put`` returning means durable; ``put_file`` with
``durable=False`` (a close) means visible, and ``sync`` makes it durable later (fsync).
Temporary names start with ``.storefs-tmp-`` and are hidden from listings.

File system calls run in worker threads (``trio.to_thread``) under a limiter, so a slow
disk never blocks the trio loop; the one exception is the hard link of a spool into place
for an upload that need only be visible (a close's, a background one's): a few metadata
calls on the filesystem of the cache directory (see ``put_file``).
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import json
import os
import secrets
import stat
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import trio

from storefs.backends.base import (
    Backend,
    Capabilities,
    ETag,
    ListPage,
    Metadata,
    ObjectMeta,
    StoreUsage,
    Upload,
)
from storefs.errors import (
    AlreadyExists,
    ConfigError,
    NameTooLong,
    NotADirectory,
    NotEmpty,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    StorefsError,
    TooLarge,
    Unsupported,
)
from storefs.source import Source

OPTIONS: dict[str, str] = {
    "file_page_size": "entries per listing page (default 1000)",
}

XATTR = "user.storefs.meta"
TMP_PREFIX = ".storefs-tmp-"
MIB = 1024 * 1024
S_IFLNK_MODE = stat.S_IFLNK

T = TypeVar("T")

#: errno of an OSError -> storefs error class (kept as data, checked by tests)
ERRNO_TABLE: dict[int, type[StorefsError]] = {
    errno.ENOENT: NotFound,
    errno.EEXIST: AlreadyExists,
    errno.ENOTEMPTY: NotEmpty,
    errno.ENOTDIR: NotADirectory,
    errno.EACCES: PermissionDenied,
    errno.EPERM: PermissionDenied,
    errno.ENAMETOOLONG: NameTooLong,
}


def translate(exc: OSError, what: str) -> StorefsError:
    cls = ERRNO_TABLE.get(exc.errno or 0, StorefsError)
    err = cls(f"{what}: {exc.strerror}")
    if cls is StorefsError:
        err.errno = exc.errno or errno.EIO
    return err


def _parse_ns(value: str) -> int | None:
    """``seconds[.fraction]`` -> nanoseconds, exactly (a float would round)."""
    whole, _, frac = value.strip().partition(".")
    if not whole.lstrip("-").isdigit() or (frac and not frac.isdigit()):
        return None
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def _format_ns(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def _set_mtime(path: Path, mtime: str, *, follow_symlinks: bool = True) -> None:
    ns = _parse_ns(mtime)
    if ns is not None:
        os.utime(path, ns=(ns, ns), follow_symlinks=follow_symlinks)


def _set_symlink_owner(path: Path, metadata: Metadata) -> None:
    """A symlink carries no xattrs: its owner is the real one (root can set it)."""
    uid, gid = metadata.get("uid", ""), metadata.get("gid", "")
    if uid.isdigit() and gid.isdigit():
        with contextlib.suppress(PermissionError):
            os.lchown(path, int(uid), int(gid))


def _is_symlink_meta(metadata: Metadata) -> bool:
    mode = metadata.get("mode", "")
    return mode.isdigit() and stat.S_ISLNK(int(mode))


class FileUpload(Upload):
    """Parts are written at their offsets into one temporary file next to the target;
    ``complete`` fsyncs it and renames it into place (no second copy of the bytes)."""

    def __init__(self, backend: FileBackend, key: str, metadata: Metadata, part_size: int,
                 if_match: ETag | None, if_none_match: bool) -> None:
        self.backend = backend
        self.key = key
        self.metadata = dict(metadata)
        self.part_size = part_size
        self.if_match = if_match
        self.if_none_match = if_none_match
        self.sizes: dict[int, int] = {}
        target = backend.path(key)
        self.tmp = target.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        self._fd: int | None = None
        # parts are written from several worker threads at once
        self._lock = threading.Lock()

    def _open(self) -> int:
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            return self._fd

    async def write_part(self, number: int, data: bytes) -> None:
        if number < 1:
            raise ConfigError(f"part number {number} out of range")

        def write() -> None:
            fd = self._open()
            view = memoryview(data)
            offset = (number - 1) * self.part_size
            while view:
                n = os.pwrite(fd, view, offset)
                view, offset = view[n:], offset + n
            self.sizes[number] = len(data)

        await self.backend.run(write, self.key)

    async def complete(self) -> ObjectMeta:
        numbers = sorted(self.sizes)
        if numbers != list(range(1, len(numbers) + 1)):
            raise ConfigError(f"{self.key}: upload is missing parts (have {numbers})")
        for n in numbers[:-1]:
            if self.sizes[n] != self.part_size:
                raise ConfigError(f"{self.key}: part {n} is not {self.part_size} bytes")
        total = sum(self.sizes.values())

        def assemble() -> ObjectMeta:
            fd = self._open()
            try:
                os.ftruncate(fd, total)
                os.fsync(fd)
            finally:
                os.close(fd)
                self._fd = None
            return self.backend.commit_tmp(self.tmp, self.key, self.metadata,
                                           self.if_match, self.if_none_match)

        return await self.backend.run(assemble, self.key)

    def _cleanup(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.tmp.unlink(missing_ok=True)
        self.sizes.clear()

    async def abort(self) -> None:
        await self.backend.run(self._cleanup, self.key)


#: directory scans kept for the next pages of paged listings
_KEPT_SCANS = 16


class FileBackend(Backend):
    def __init__(self, root: Path, page_size: int = 1000) -> None:
        self.root = root
        self.limiter = trio.CapacityLimiter(16)
        self.requests: dict[str, int] = {}
        self.capabilities = Capabilities(
            name="file",
            real_directories=True,
            server_side_copy=True,
            cheap_rename=True,
            dir_rename=True,
            atomic_exchange=True,
            metadata_update=True,
            multipart_threshold=8 * MIB,
            min_part_size=1,
            max_part_size=1 << 40,
            max_key_length=4096,
            local=True,
            list_page_size=page_size,
            # one xattr holds them all; ext4 keeps at most a block of xattrs per file
            max_metadata_size=3072,
            metadata_style="s3fs",
        )
        #: directory -> ((inode, mtime), its sorted keys): the scan a paged listing's
        #: next pages reuse while the directory is unchanged (else every page of a
        #: 10,000-entry listing would scan and sort all 10,000 names again)
        self._scans: dict[str, tuple[tuple[int, int], list[str]]] = {}
        self._scans_lock = threading.Lock()  # listings run in several worker threads
        #: the device of the directory (known after ``connect``): a spool on the same one
        #: can be hard-linked into place
        self._root_dev: int | None = None

    def describe(self) -> str:
        return f"file://{self.root}"

    # -- helpers ------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        return self.root / key.rstrip("/") if key else self.root

    def local_path(self, key: str) -> str | None:
        return str(self.path(key))

    async def run(self, fn: Callable[[], T], what: str) -> T:
        try:
            return await trio.to_thread.run_sync(fn, limiter=self.limiter)
        except OSError as exc:
            raise translate(exc, what or "/") from exc

    def _count(self, op: str) -> None:
        self.requests[op] = self.requests.get(op, 0) + 1

    @staticmethod
    def _etag(st: os.stat_result) -> ETag:
        return ETag(f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}")

    def _read_meta(self, p: str | Path, st: os.stat_result) -> dict[str, str]:
        if stat.S_ISLNK(st.st_mode):
            # symlinks carry no user xattrs on Linux; their attributes are their own
            return {"mode": str(stat.S_IFLNK | 0o777), "uid": str(st.st_uid),
                    "gid": str(st.st_gid), "mtime": _format_ns(st.st_mtime_ns)}
        try:
            raw = os.getxattr(p, XATTR)
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOTSUP):
                return {}
            raise
        meta: dict[str, str] = json.loads(raw)
        return meta

    def _meta_of(self, key: str, p: str | Path, st: os.stat_result) -> ObjectMeta:
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir and key and not key.endswith("/"):
            key += "/"
        return ObjectMeta(
            key=key,
            size=0 if is_dir else st.st_size,
            etag=self._etag(st),
            mtime=st.st_mtime,
            is_dir=is_dir,
            metadata=self._read_meta(p, st),
        )

    def _write_meta(self, p: Path, metadata: Metadata) -> None:
        if metadata:
            raw = json.dumps(dict(metadata), sort_keys=True).encode()
            try:
                os.setxattr(p, XATTR, raw)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.E2BIG):
                    raise TooLarge(f"{p.name}: {len(raw)} bytes of metadata do not fit in "
                                   "the directory's extended attributes") from exc
                raise
        else:
            try:
                os.removexattr(p, XATTR)
            except OSError as exc:
                if exc.errno not in (errno.ENODATA, errno.ENOTSUP):
                    raise

    def _check(self, key: str, if_match: ETag | None, if_none_match: bool) -> None:
        try:
            st = os.lstat(self.path(key))
        except FileNotFoundError:
            if if_match is not None:
                raise PreconditionFailed(f"{key}: gone since it was read") from None
            return
        if if_none_match:
            raise AlreadyExists(key)
        if if_match is not None and self._etag(st) != if_match:
            raise PreconditionFailed(f"{key}: changed since it was read")

    def commit_tmp(self, tmp: Path, key: str, metadata: Metadata,
                   if_match: ETag | None, if_none_match: bool) -> ObjectMeta:
        """Give a finished temporary file its metadata and rename it into place."""
        target = self.path(key)
        try:
            self._write_meta(tmp, metadata)
            if mtime := metadata.get("mtime"):
                _set_mtime(tmp, mtime)
            self._check(key, if_match, if_none_match)
            if if_none_match:
                # link fails atomically when the name exists: O_EXCL semantics
                os.link(tmp, target)
                tmp.unlink()
            else:
                os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self._meta_of(key, target, os.lstat(target))

    # -- the interface ------------------------------------------------------------------

    async def connect(self) -> None:
        def check() -> None:
            if not self.root.is_dir():
                raise NotFound(f"file: {self.root} is not a directory")
            if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
                raise PermissionDenied(f"file: {self.root} is not readable and writable")
            self._root_dev = os.stat(self.root).st_dev

        await self.run(check, str(self.root))

    async def head(self, key: str) -> ObjectMeta:
        self._count("head")

        def head() -> ObjectMeta:
            p = self.path(key)
            st = os.lstat(p)
            if key.endswith("/") and not stat.S_ISDIR(st.st_mode):
                raise NotFound(key)
            return self._meta_of(key, p, st)

        return await self.run(head, key)

    async def list_page(
        self, prefix: str, *, delimiter: str = "/", token: str | None = None, limit: int = 0
    ) -> ListPage:
        self._count("list")
        limit = limit or self.capabilities.list_page_size

        def walk(rel: str) -> list[tuple[str, os.stat_result]]:
            # every entry below rel, sorted by key as a flat store would list them
            out: list[tuple[str, os.stat_result]] = []
            try:
                with os.scandir(self.path(rel)) as it:
                    entries = sorted((e for e in it if not e.name.startswith(TMP_PREFIX)),
                                     key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                return out
            for e in entries:
                st = e.stat(follow_symlinks=False)
                key = rel + e.name
                if stat.S_ISDIR(st.st_mode):
                    out.append((key + "/", st))
                    if not delimiter:
                        out += walk(key + "/")
                else:
                    out.append((key, st))
            return out

        def names(rel: str, continuing: bool) -> list[str]:
            # keys of one directory without a stat each (d_type says which are dirs),
            # sorted as a flat store lists them; only the page's entries are stat'ed.  A
            # listing's first page always scans (so a new listing sees every change);
            # its next pages reuse that scan unless the directory changed since, which at
            # worst (a change within the filesystem's timestamp granularity) misses an
            # entry made while the listing ran, as a paged listing of any store may
            path = self.path(rel)
            try:
                st = os.stat(path)
                version = (st.st_ino, st.st_mtime_ns)
                with self._scans_lock:
                    kept = self._scans.get(rel)
                if continuing and kept is not None and kept[0] == version:
                    return kept[1]
                with os.scandir(path) as it:
                    keys = [rel + e.name + ("/" if e.is_dir(follow_symlinks=False) else "")
                            for e in it if not e.name.startswith(TMP_PREFIX)]
            except (FileNotFoundError, NotADirectoryError):
                return []
            keys.sort()
            if len(keys) > limit:  # more pages will follow
                with self._scans_lock:
                    self._scans.pop(rel, None)
                    self._scans[rel] = (version, keys)
                    while len(self._scans) > _KEPT_SCANS:
                        self._scans.pop(next(iter(self._scans)))
            return keys

        def page() -> ListPage:
            if delimiter:
                keys = names(prefix, token is not None)
                start = bisect.bisect_right(keys, token) if token is not None else 0
                chunk_keys = keys[start:start + limit]
                objects = []
                # string paths: pathlib costs more than the lstat and getxattr per entry
                root = f"{self.root}/"
                for k in chunk_keys:
                    p = root + k.rstrip("/")
                    try:
                        objects.append(self._meta_of(k, p, os.lstat(p)))
                    except FileNotFoundError:
                        continue  # removed since the scan
                more = start + limit < len(keys)
                return ListPage(objects, [], chunk_keys[-1] if more and chunk_keys else None)
            entries = walk(prefix)
            start = 0
            if token is not None:
                while start < len(entries) and entries[start][0] <= token:
                    start += 1
            chunk = entries[start:start + limit]
            root = f"{self.root}/"
            objects = [self._meta_of(k, root + k.rstrip("/"), st) for k, st in chunk]
            objects = [o for o in objects if not o.is_dir]
            more = start + limit < len(entries)
            return ListPage(objects, [], chunk[-1][0] if more and chunk else None)

        return await self.run(page, prefix)

    async def get_range(
        self, key: str, start: int, end: int, *, if_match: ETag | None = None
    ) -> bytes:
        self._count("get")

        def read() -> bytes:
            p = self.path(key)
            st = os.lstat(p)
            if if_match is not None and self._etag(st) != if_match:
                raise PreconditionFailed(f"{key}: changed since it was read")
            if stat.S_ISLNK(st.st_mode):
                return os.readlink(p).encode()[start:end]
            if stat.S_ISDIR(st.st_mode):
                raise NotFound(key)
            fd = os.open(p, os.O_RDONLY)
            try:
                return os.pread(fd, max(0, end - start), start)
            finally:
                os.close(fd)

        return await self.run(read, key)

    async def put(
        self,
        key: str,
        data: bytes,
        metadata: Metadata,
        *,
        content_type: str | None = None,
        if_match: ETag | None = None,
        if_none_match: bool = False,
    ) -> ObjectMeta:
        self._count("put")
        if key.endswith("/"):
            return await self.make_dir(key, metadata)

        def write() -> ObjectMeta:
            target = self.path(key)
            if _is_symlink_meta(metadata):
                return self._put_symlink(key, target, data, metadata, if_none_match)
            tmp = target.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            return self.commit_tmp(tmp, key, metadata, if_match, if_none_match)

        return await self.run(write, key)

    async def put_file(
        self,
        key: str,
        fd: int,
        size: int,
        metadata: Metadata,
        *,
        content_type: str | None = None,
        if_match: ETag | None = None,
        if_none_match: bool = False,
        durable: bool = True,
        link_from: str | None = None,
    ) -> ObjectMeta:
        self._count("put")
        target = self.path(key)

        def link() -> ObjectMeta | None:
            """The spool becomes the file (no byte written twice); None where it cannot."""
            assert link_from is not None
            with contextlib.suppress(FileNotFoundError):
                if os.stat(target).st_ino == os.fstat(fd).st_ino:
                    # already in place (a crash came before the journal said so)
                    return self._meta_of(key, target, os.lstat(target))
            if durable:
                os.fsync(fd)
            tmp = target.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
            try:
                os.link(link_from, tmp)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                return None
            os.chmod(tmp, 0o644)  # the spool was private; the store's file is not
            return self.commit_tmp(tmp, key, metadata, if_match, if_none_match)

        def copy() -> ObjectMeta:
            tmp = target.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                offset = 0
                while offset < size:
                    # in-kernel copy (a reflink where the filesystem can): no bytes pass
                    # through this process
                    n = os.copy_file_range(fd, out, size - offset, offset, offset)
                    if n == 0:
                        break
                    offset += n
                if offset < size:
                    os.ftruncate(out, size)  # the spool's sparse tail reads as zeros
                if durable:
                    os.fsync(out)
            except BaseException:
                os.close(out)
                tmp.unlink(missing_ok=True)
                raise
            os.close(out)
            return self.commit_tmp(tmp, key, metadata, if_match, if_none_match)

        if link_from is not None:
            if durable or os.fstat(fd).st_dev != self._root_dev:
                # the fsync may take long; another filesystem may be slow (and the link
                # fails there anyway)
                done = await self.run(link, key)
            else:
                # a few metadata calls on the filesystem that holds the cache directory
                # (a hard link works within one only), which the trio thread writes to
                # anyway: cheaper than a hop to a worker thread and back
                try:
                    done = link()
                except OSError as exc:
                    raise translate(exc, key) from exc
            if done is not None:
                return done
        return await self.run(copy, key)

    async def sync(self, key: str) -> None:
        self._count("sync")

        def call() -> None:
            fd = os.open(self.path(key), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        with contextlib.suppress(NotFound):  # removed meanwhile: nothing to keep
            await self.run(call, key)

    def _put_symlink(self, key: str, target: Path, data: bytes, metadata: Metadata,
                     if_none_match: bool) -> ObjectMeta:
        tmp = target.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        os.symlink(os.fsdecode(data), tmp)
        try:
            if mtime := metadata.get("mtime"):
                _set_mtime(tmp, mtime, follow_symlinks=False)
            _set_symlink_owner(tmp, metadata)
            if if_none_match:
                self._check(key, None, True)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self._meta_of(key, target, os.lstat(target))

    async def begin_upload(
        self,
        key: str,
        metadata: Metadata,
        *,
        part_size: int,
        content_type: str | None = None,
        if_match: ETag | None = None,
        if_none_match: bool = False,
        size: int | None = None,
    ) -> Upload:
        self._count("begin_upload")
        if not await self.run(lambda: self.path(key).parent.is_dir(), key):
            raise NotFound(f"{key}: parent directory does not exist")
        return FileUpload(self, key, metadata, part_size, if_match, if_none_match)

    async def delete(self, key: str) -> None:
        self._count("delete")

        def delete() -> None:
            p = self.path(key)
            try:
                if os.path.isdir(p) and not os.path.islink(p):
                    raise Unsupported(f"{key}: is a directory; use remove_dir")
                p.unlink()
            except FileNotFoundError:
                pass

        await self.run(delete, key)

    async def copy(
        self,
        src: str,
        dst: str,
        *,
        metadata: Metadata | None = None,
        if_match: ETag | None = None,
    ) -> ObjectMeta:
        self._count("copy")

        def copy() -> ObjectMeta:
            sp = self.path(src)
            st = os.lstat(sp)
            if if_match is not None and self._etag(st) != if_match:
                raise PreconditionFailed(f"{src}: changed since it was read")
            meta = self._read_meta(sp, st) if metadata is None else dict(metadata)
            if stat.S_ISLNK(st.st_mode):
                return self._put_symlink(dst, self.path(dst), os.fsencode(os.readlink(sp)),
                                         meta, False)
            target = self.path(dst)
            tmp = target.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
            with open(sp, "rb") as fin, open(tmp, "wb") as fout:
                # copy_file_range: a reflink or in-kernel copy where the disk allows it
                remaining = st.st_size
                while remaining > 0:
                    n = os.copy_file_range(fin.fileno(), fout.fileno(), remaining)
                    if n == 0:
                        break
                    remaining -= n
                fout.flush()
                os.fsync(fout.fileno())
            if "mtime" not in meta:
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            return self.commit_tmp(tmp, dst, meta, None, False)

        return await self.run(copy, src)

    async def rename(self, src: str, dst: str) -> ObjectMeta:
        self._count("rename")

        def rename() -> ObjectMeta:
            os.replace(self.path(src), self.path(dst))
            p = self.path(dst)
            return self._meta_of(dst, p, os.lstat(p))

        return await self.run(rename, src)

    async def exchange(self, a: str, b: str) -> None:
        """Atomically swap two names (renameat2 RENAME_EXCHANGE)."""
        self._count("rename")
        from storefs.backends._renameat2 import renameat2_exchange

        await self.run(lambda: renameat2_exchange(self.path(a), self.path(b)), a)

    async def make_dir(self, key: str, metadata: Metadata) -> ObjectMeta:
        self._count("make_dir")

        def mkdir() -> ObjectMeta:
            p = self.path(key)
            p.mkdir(mode=0o755)
            self._write_meta(p, metadata)
            if mtime := metadata.get("mtime"):
                _set_mtime(p, mtime)
            return self._meta_of(key, p, os.lstat(p))

        return await self.run(mkdir, key)

    async def remove_dir(self, key: str) -> None:
        self._count("remove_dir")

        def rmdir() -> None:
            p = self.path(key)
            with contextlib.suppress(FileNotFoundError):
                p.rmdir()

        await self.run(rmdir, key)

    async def set_metadata(
        self, key: str, metadata: Metadata, *, if_match: ETag | None = None
    ) -> ObjectMeta:
        self._count("set_metadata")

        def update() -> ObjectMeta:
            p = self.path(key)
            st = os.lstat(p)
            if if_match is not None and self._etag(st) != if_match:
                raise PreconditionFailed(f"{key}: changed since it was read")
            mtime = metadata.get("mtime")
            if stat.S_ISLNK(st.st_mode):
                if mtime:
                    _set_mtime(p, mtime, follow_symlinks=False)
                _set_symlink_owner(p, metadata)
            else:
                self._write_meta(p, metadata)
                if mtime:
                    _set_mtime(p, mtime)
            return self._meta_of(key, p, os.lstat(p))

        return await self.run(update, key)

    async def statfs(self) -> StoreUsage | None:
        def usage() -> StoreUsage:
            st = os.statvfs(self.root)
            return StoreUsage(total=st.f_blocks * st.f_frsize, free=st.f_bavail * st.f_frsize,
                              files=st.f_files, files_free=st.f_favail)

        return await self.run(usage, "")

    def statistics(self) -> dict[str, object]:
        return {"requests": dict(self.requests)}


def open_backend(source: Source, options: Mapping[str, str]) -> FileBackend:
    page = options.get("file_page_size", "1000")
    if not page.isdigit() or int(page) < 1:
        raise ConfigError(f"file_page_size={page!r}: expected a positive integer")
    return FileBackend(Path("/" + source.path), int(page))
