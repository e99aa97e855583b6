"""The filesystem core: POSIX operations on a backend, with caches and write-back.

``Filesystem`` is what ``storefs.fuse`` calls for every request.  It speaks inodes, names
(``str``, decoded from the kernel's bytes with ``surrogateescape``) and ``storefs.errors``;
it knows nothing of pyfuse3.  Every method either returns or raises a ``StorefsError``.

Consistency
    Close-to-open: ``open`` checks the store's current version unless this mount checked
    it less than ``attr_timeout`` seconds ago, and ``close`` (flush) uploads what the handle
    changed before it returns, reporting upload errors to ``close``.  ``fsync`` uploads and
    returns only when the store has the data.  Attributes and listings are trusted for
    ``attr_timeout`` / ``dir_timeout`` seconds; this mount's own changes are seen at once.

Directories on flat stores
    A directory exists when its marker ``dir/`` exists or when a key has it as prefix;
    ``mkdir`` writes the marker, so empty directories persist; a directory that existed
    only as a prefix gets a marker when its last entry is removed, so it does not vanish
    under a shell that is in it.  A directory and a file of the same name: the directory
    wins (as in mountpoint-s3).

Lock order: ``DirtyFile.lock`` only; it is never held across a call that takes another
dirty file's lock, except in ``rename``, which takes the source's only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno as _errno
import functools
import logging
import mimetypes
import os
import stat
from collections.abc import AsyncGenerator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import trio
from cachetools import TTLCache

from storefs.backends.base import Backend, ETag, ListPage, ObjectMeta, StoreUsage
from storefs.cache.dirty import DirtyFile, Expect
from storefs.cache.fetch import Fetcher, LocalVersion, ReadAhead, RemoteVersion, VersionReader
from storefs.cache.writeback import WriteBack
from storefs.errors import (
    AlreadyExists,
    InvalidName,
    IsADirectory,
    NameTooLong,
    NoSpace,
    NotADirectory,
    NotEmpty,
    NotFound,
    ReadOnly,
    StorefsError,
    TooLarge,
    Unsupported,
)
from storefs.fs import posix_meta
from storefs.fs.attrs import Attr, now_ns
from storefs.fs.attrstore import AttrStore
from storefs.fs.handles import DirHandle, FileHandle, HandleTable
from storefs.fs.inodes import ROOT_INO, Inode, InodeTable
from storefs.fs.kernel_pages import KernelPages
from storefs.fs.kernel_pages import Store as PageStore
from storefs.fs.metacache import Child, Listing, MetaCache
from storefs.parallel import fan_out

log = logging.getLogger(__name__)

NAME_MAX = 255
#: renameat2(2) flags, as the kernel passes them
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
#: how many objects a directory rename copies at once
TREE_PARALLEL = 16
#: attribute HEADs in flight for a listing without metadata
PREFETCH_PARALLEL = 32
#: writes at least this large are copied into the spool by a worker thread, so the trio
#: thread sends uploads meanwhile (a thread hop costs more than a small copy)
THREAD_WRITE = 128 * 1024


class NoAttr(StorefsError):
    """getxattr of a name the file does not have."""

    errno = _errno.ENODATA


class InvalidArgument(StorefsError):
    errno = _errno.EINVAL


class XattrTooBig(StorefsError):
    """The xattrs would not fit in the store's metadata limit."""

    errno = _errno.E2BIG


class NotPermitted(StorefsError):
    errno = _errno.EPERM


class _SharedStat:
    """One store lookup of a path that concurrent requests wait for together."""

    __slots__ = ("done", "ok", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.ok = False
        self.result: ObjectMeta | None = None


@dataclass
class FsOptions:
    """What the filesystem core needs from the mount options (see docs/CONFIGURATION.md)."""

    defaults: posix_meta.Defaults
    attr_timeout: float = 1.0
    entry_timeout: float = 5.0
    negative_timeout: float = 1.0
    dir_timeout: float = 60.0
    read_only: bool = False
    #: read-ahead window limit, in pages
    readahead_pages: int = 32
    #: shown instead of the stored owner / applied to every mode (``-o uid=,gid=,umask=``)
    force_uid: int | None = None
    force_gid: int | None = None
    umask: int | None = None
    #: ``close`` uploads (False: the file goes up in the background after its release)
    sync_close: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class AttrChanges:
    """The fields of a setattr request that are set."""

    size: int | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None


def _as_dir(marker: ObjectMeta) -> ObjectMeta:
    """A directory's meta from its marker object's."""
    return ObjectMeta(key=marker.key, size=0, etag=marker.etag or ETag("marker"),
                      mtime=marker.mtime, is_dir=True, content_type=marker.content_type,
                      metadata=marker.metadata, metadata_complete=marker.metadata_complete)


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class Filesystem:
    """POSIX semantics over a backend (see the module docstring)."""

    def __init__(self, backend: Backend, options: FsOptions, fetcher: Fetcher,
                 writeback: WriteBack, attrs: AttrStore | None = None) -> None:
        self.backend = backend
        self.caps = backend.capabilities
        self.opts = options
        self.fetcher = fetcher
        self.writeback = writeback
        self.style = self.caps.metadata_style
        #: the record of seen metadata, for stores whose listings lack it (not local ones)
        self.attrs = attrs if not self.caps.local and self.caps.name != "mem" else None
        self.started_ns = now_ns()
        d = options.defaults
        root_attr = Attr(stat.S_IFDIR | d.dir_mode, d.uid, d.gid, 0,
                         self.started_ns, self.started_ns, self.started_ns)
        root = Inode(ROOT_INO, "", root_attr)
        root.implicit = not self.caps.real_directories
        root.lookups = 1
        self.inodes = InodeTable(root)
        self.handles = HandleTable()
        self.cache = MetaCache(options.attr_timeout, options.negative_timeout,
                               options.dir_timeout, trio.current_time)
        self._stats_inflight: dict[str, _SharedStat] = {}
        self._usage: tuple[float, StoreUsage | None] | None = None
        self._nursery: trio.Nursery | None = None
        self.kernel_pages: KernelPages | None = None
        #: lookup misses per directory, and directories too big to list for a lookup
        self._misses: TTLCache[str, int] = TTLCache(10_000, max(options.dir_timeout, 1.0),
                                                     trio.current_time)
        self._big_dirs: TTLCache[str, bool] = TTLCache(10_000, 60.0, trio.current_time)
        self._prefetch_limiter = trio.CapacityLimiter(PREFETCH_PARALLEL)
        self.counters: dict[str, int] = {}
        writeback.on_uploaded = self._uploaded
        writeback.on_conflict = self._conflicted

    # ---------------------------------------------------------------------------------------
    # start-up

    def attach(self, nursery: trio.Nursery, store_pages: PageStore | None = None) -> None:
        """Background work (attribute prefetch) runs in the mount's ``nursery``.
        ``store_pages`` (``pyfuse3.notify_store`` in a mount) lets pages fetched for random
        readers go into the kernel's page cache whole (``storefs.fs.kernel_pages``)."""
        self._nursery = nursery
        if store_pages is not None and not self.caps.local:
            self.kernel_pages = KernelPages(store_pages, nursery)

    async def _settle_pages(self, inode: Inode) -> None:
        """Until no page push into ``inode`` is in flight (see ``storefs.fs.kernel_pages``:
        opens and truncates wait, so no push of old bytes lands after them).  Shielded: a
        push waits only for page locks of reads this loop answers."""
        if self.kernel_pages is not None:
            with trio.CancelScope(shield=True):
                await self.kernel_pages.settle(inode)

    async def start(self) -> None:
        """Read the root's attributes and adopt the uploads a previous mount left."""
        if self.caps.real_directories:
            with contextlib.suppress(NotFound):
                meta = await self.backend.head("")
                self._apply_meta(self.inodes.root, meta)
        for df in self.writeback.recover():
            self._adopt(df)

    def _adopt(self, df: DirtyFile) -> None:
        """Show a recovered dirty file at its path and queue its upload."""
        probe = ObjectMeta(key=df.key, size=df.size, etag=ETag(""), mtime=0.0,
                           metadata=df.metadata)
        attr = posix_meta.decode(probe, self.opts.defaults).attr.with_(size=df.size)
        inode = self.inodes.at(df.key) or self.inodes.add(df.key, attr)
        inode.attr = attr
        self.inodes.set_local_only(inode, df.expect.absent)
        if df.base_etag is not None and df.base is None and df.base_limit > 0:
            base_meta = ObjectMeta(key=df.key, size=df.base_limit, etag=df.base_etag, mtime=0)
            df.base = self.writeback.base_reader(df.key, base_meta)
            df.base_limit = min(df.base_limit, df.base.size)
        inode.dirty = df
        self.cache.invalidate(df.key)
        log.info("recovered pending upload of %s (%d bytes)", df.key, df.size)
        self.writeback.schedule(df)

    # ---------------------------------------------------------------------------------------
    # names, attributes, the store's view of a path

    def _count(self, op: str) -> None:
        self.counters[op] = self.counters.get(op, 0) + 1

    def check_name(self, name: str, parent: Inode) -> str:
        """The path of ``name`` in ``parent``, or InvalidName / NameTooLong."""
        if parent.path is None:
            raise NotFound("the directory was removed")
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            raise InvalidName(f"invalid name {name!r}")
        raw = name.encode("utf-8", "surrogateescape")
        if len(raw) > NAME_MAX:
            raise NameTooLong(f"{name[:40]}...: longer than {NAME_MAX} bytes")
        if not self.caps.local:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidName(f"{name!r}: the store keeps only UTF-8 names") from None
        path = _join(parent.path, name)
        self.backend.check_name(path + ("/" if parent.attr.is_dir else ""))
        return path

    def shown(self, attr: Attr) -> Attr:
        """``attr`` with the mount's uid=/gid=/umask= applied (what ``stat`` shows)."""
        o = self.opts
        if o.force_uid is None and o.force_gid is None and o.umask is None:
            return attr
        mode = attr.mode
        if o.umask is not None and not stat.S_ISLNK(mode):
            mode = (mode & ~0o7777) | (stat.S_IMODE(mode) & ~o.umask)
        return attr.with_(mode=mode,
                          uid=attr.uid if o.force_uid is None else o.force_uid,
                          gid=attr.gid if o.force_gid is None else o.force_gid)

    def _key(self, inode: Inode) -> str:
        assert inode.path is not None
        return inode.path + "/" if inode.attr.is_dir and inode.path else inode.path

    def _apply_meta(self, inode: Inode, meta: ObjectMeta, *, listed: bool = False,
                    decoded: posix_meta.Decoded | None = None) -> None:
        """Take attributes from the store's ``meta`` (the inode has no local changes);
        ``listed``: ``meta`` comes from a directory listing; ``decoded``: ``meta`` decoded
        already."""
        old = inode.meta.etag if inode.meta is not None else None
        if inode.meta is meta or (not meta.metadata_complete and inode.complete and (
                (old == meta.etag and old) or (meta.is_dir and inode.attr.is_dir))):
            # the same entry again, or a listing without metadata, which says nothing new
            # about this version (nor does a bare prefix about a directory): keep what a
            # HEAD said; a listing that names this version vouches for it as long as
            # itself (so up to twice dir_timeout when it was served from the cache)
            if listed and inode.complete and not meta.is_dir:
                inode.listed = True
                inode.checked = trio.current_time()
            return
        inode.listed = listed
        if decoded is None:
            decoded = posix_meta.decode(meta, self.opts.defaults)
        inode.attr = decoded.attr
        inode.xattrs = decoded.xattrs
        inode.meta = meta
        inode.complete = meta.metadata_complete
        if self.attrs is not None and meta.metadata_complete and not listed:
            self.attrs.record(meta)
        inode.checked = trio.current_time()
        inode.implicit = meta.is_dir and not meta.etag and not self.caps.real_directories
        if old != meta.etag:
            inode.symlink_target = decoded.symlink_target

    def _implicit_dir_meta(self, path: str, *, known: bool = True) -> ObjectMeta:
        """A directory with no marker object.  ``known=False``: a listing showed the prefix,
        which says nothing about a marker (the store rolls markers into prefixes), so the
        attributes are provisional until a lookup checks."""
        return ObjectMeta(key=path + "/", size=0, etag=ETag(""),
                          mtime=self.started_ns / 1e9, is_dir=True, metadata_complete=known)

    async def _stat(self, path: str, *, file_only: bool = False,
                    listed_dir: bool = False) -> ObjectMeta | None:
        """What the store holds at ``path`` now (a dir meta has ``is_dir``), or None.
        ``file_only``: the path is known to be a file, one HEAD will do (else flat stores
        also list ``path/``, since a directory of that name would win).  ``listed_dir``:
        a listing has just shown a directory there, so only its marker is asked for.
        Concurrent calls for one path share one round of requests."""
        slot = ("f:" if file_only else "a:") + path
        shared = self._stats_inflight.get(slot)
        if shared is not None:
            await shared.done.wait()
            if shared.ok:
                return shared.result
        shared = self._stats_inflight[slot] = _SharedStat()
        try:
            meta = await (self._head_file(path) if file_only
                          else self._listed_dir(path) if listed_dir
                          else self._stat_uncached(path))
            shared.result, shared.ok = meta, True
            if meta is None:
                self.cache.put_negative(path)
            else:
                self.cache.put(path, meta)
            return meta
        finally:
            shared.done.set()
            if self._stats_inflight.get(slot) is shared:
                del self._stats_inflight[slot]

    async def _head_file(self, path: str) -> ObjectMeta | None:
        self._count("stat")
        try:
            meta = await self.backend.head(path)
        except NotFound:
            return None
        return None if meta.is_dir else meta

    async def _listed_dir(self, path: str) -> ObjectMeta | None:
        """The attributes of a directory a flat store's listing has just shown as a prefix:
        its marker's (one HEAD), or an implicit directory's when it has none."""
        if self.caps.containers and "/" not in path:
            return await self._stat_uncached(path)  # a container: gone is gone
        self._count("stat")
        try:
            marker = await self.backend.head(path + "/")
        except NotFound:
            return self._implicit_dir_meta(path)
        return _as_dir(marker)

    async def _stat_uncached(self, path: str) -> ObjectMeta | None:
        self._count("stat")
        if self.caps.real_directories:
            try:
                return await self.backend.head(path)
            except NotFound:
                return None
        if self.caps.containers and "/" not in path:
            # a top-level name is a container or nothing, and an empty container lists
            # as nothing: ask for the container itself
            try:
                return await self.backend.head(path + "/")
            except NotFound:
                return None
        found: dict[str, Any] = {}

        async def head() -> None:
            with contextlib.suppress(NotFound):
                found["file"] = await self.backend.head(path)

        async def listing() -> None:
            found["dir"] = await self.backend.list_page(path + "/", limit=1)

        async with fan_out() as nursery:
            nursery.start_soon(head)
            nursery.start_soon(listing)
        page = found["dir"]
        if page.objects or page.prefixes:
            marker = next((o for o in page.objects if o.key == path + "/"), None)
            if marker is not None and not marker.metadata_complete:
                with contextlib.suppress(NotFound):
                    marker = await self.backend.head(path + "/")
            if marker is not None:
                return _as_dir(marker)
            return self._implicit_dir_meta(path)
        meta: ObjectMeta | None = found.get("file")
        return meta

    def _inode_from_meta(self, path: str, meta: ObjectMeta, *, listed: bool = False) -> Inode:
        meta = _dir_marker(meta)
        inode = self.inodes.at(path)
        if inode is not None:
            if inode.dirty is not None or inode.local_only:
                return inode
            if inode.attr.is_dir == meta.is_dir:
                self._apply_meta(inode, meta, listed=listed)
                return inode
            # the type changed under us (another client): a new inode for the new object
        decoded = posix_meta.decode(meta, self.opts.defaults)
        inode = self.inodes.add(path, decoded.attr)
        inode.complete = False  # the store has said nothing of it yet: nothing to keep
        self._apply_meta(inode, meta, listed=listed, decoded=decoded)
        return inode

    def _pending_child(self, path: str) -> Inode | None:
        inode = self.inodes.at(path)
        if inode is not None and (inode.local_only or inode.dirty is not None):
            return inode
        return None

    async def _resolve(self, parent: Inode, name: str) -> Inode | None:
        """The inode at ``name`` in ``parent`` (from local state, the cache or the store)."""
        path = self.check_name(name, parent)
        pending = self._pending_child(path)
        if pending is not None:
            return pending
        now = trio.current_time()
        known = self.inodes.at(path)
        if known is not None and known.complete:
            long = known.attr.is_dir or known.listed
            ttl = self.opts.dir_timeout if long else self.opts.attr_timeout
            if now - known.checked < ttl:
                return known
        if self.cache.is_negative(path):
            return None
        meta = self.cache.get(path)
        if meta is None:
            child = self.cache.child(path)
            if child is None and parent.path is not None \
                    and await self._list_parent(parent.path) is not None:
                if self.cache.is_negative(path):
                    return None
                child = self.cache.child(path)
            if child is not None:
                meta = child.meta or self._implicit_dir_meta(path, known=False)
        if meta is None or not meta.metadata_complete:
            # a listing that just named a file needs one HEAD (and shares the attribute
            # prefetch's, if it is in flight), not HEAD + LIST of a directory of that name;
            # so does a file this mount knows whose attributes expired (as in getattr)
            a_file = (not meta.is_dir) if meta is not None else (
                known is not None and known.complete and not known.attr.is_dir)
            meta = await self._stat(path, file_only=a_file)
            if meta is None and a_file:
                meta = await self._stat(path)  # gone, or a directory now
            if meta is None:
                return None
        return self._inode_from_meta(path, meta)

    async def _list_parent(self, path: str) -> Listing | None:
        """After the second lookup miss in one directory, list it instead (one request for
        every name in it: git, compilers and shells probe many names in few directories),
        if it fits in one page; a bigger directory keeps per-name lookups."""
        listing = self.cache.listing(path)
        if listing is not None or not self.cache.enabled[2]:
            return listing
        misses = self._misses.get(path, 0) + 1
        self._misses[path] = misses
        if misses < 2 or path in self._big_dirs:
            return None
        slot = "l:" + path
        shared = self._stats_inflight.get(slot)
        if shared is not None:
            await shared.done.wait()
            return self.cache.listing(path)
        shared = self._stats_inflight[slot] = _SharedStat()
        try:
            prefix = path + "/" if path else ""
            page = await self.backend.list_page(prefix)
            self._count("list")
            if page.next_token is not None:
                self._big_dirs[path] = True
                return None
            listing = dict(self._page_entries(path, page))
            for inode in self.inodes.below(path):
                if inode.path is not None and inode.local_only:
                    rest = inode.path[len(prefix):]
                    if "/" not in rest:
                        listing.setdefault(rest, Child(None, False))
            self.cache.put_listing(path, listing)
            return listing
        finally:
            shared.done.set()
            del self._stats_inflight[slot]

    # ---------------------------------------------------------------------------------------
    # lookup, getattr, forget

    async def lookup(self, parent_ino: int, name: str) -> Inode | None:
        self._count("lookup")
        parent = self.inodes.get(parent_ino)
        if name == ".":
            return parent
        if name == "..":
            if parent.path is None or parent.path == "":
                return self.inodes.root
            up = parent.path.rpartition("/")[0]
            return self.inodes.at(up) or await self._resolve_path(up)
        if not parent.attr.is_dir:
            raise NotADirectory(parent.path or "")
        return await self._resolve(parent, name)

    async def _resolve_path(self, path: str) -> Inode | None:
        inode: Inode | None = self.inodes.root
        for part in [p for p in path.split("/") if p]:
            if inode is None:
                return None
            inode = await self._resolve(inode, part)
        return inode

    def remember(self, inode: Inode) -> None:
        """The kernel took a reference (a lookup reply, or a readdirplus entry)."""
        inode.lookups += 1

    def forget(self, pairs: Iterable[tuple[int, int]]) -> None:
        for ino, count in pairs:
            if ino != ROOT_INO:
                self.inodes.forget(ino, count)

    def drop_if_unused(self, inode: Inode) -> None:
        self.inodes.drop_if_unused(inode)

    async def getattr(self, ino: int) -> Inode:
        self._count("getattr")
        inode = self.inodes.get(ino)
        await self._fresh(inode)
        return inode

    async def _fresh(self, inode: Inode, ttl: float | None = None) -> None:
        """Revalidate ``inode`` against the store if its attributes are stale or only from a
        listing without metadata (never for files with local changes)."""
        if inode.ino == ROOT_INO or inode.path is None:
            return
        if inode.dirty is not None or inode.local_only:
            return
        if ttl is None:
            # a listing vouches for its entries as long as it answers lookups itself
            long = inode.attr.is_dir or inode.listed
            ttl = self.opts.dir_timeout if long else self.opts.attr_timeout
        if inode.complete and trio.current_time() - inode.checked < ttl:
            return
        path = inode.path
        meta = await self._stat(path, file_only=not inode.attr.is_dir)
        if meta is None and not inode.attr.is_dir:
            meta = await self._stat(path)  # gone, or a directory now
        if inode.path != path or inode.dirty is not None:
            return  # renamed or written meanwhile: local state wins
        if meta is None:
            raise NotFound(f"{path}: no longer in the store")
        if meta.is_dir != inode.attr.is_dir:
            raise NotFound(f"{path}: replaced by a {'directory' if meta.is_dir else 'file'}")
        self._apply_meta(inode, meta)

    # ---------------------------------------------------------------------------------------
    # attributes

    def _metadata(self, inode: Inode, *, atime: bool = False) -> dict[str, str]:
        md = posix_meta.encode(inode.attr, inode.xattrs, self.style, atime=atime)
        limit = self.caps.max_metadata_size
        if limit is not None and posix_meta.metadata_size(md) > limit:
            raise TooLarge(f"{inode.path}: attributes and xattrs exceed the store's "
                           f"{limit}-byte metadata limit")
        return md

    def _writable(self) -> None:
        if self.opts.read_only or self.caps.read_only:
            raise ReadOnly("the mount is read-only")

    async def setattr(self, ino: int, changes: AttrChanges, fh: int | None = None) -> Inode:
        self._count("setattr")
        self._writable()
        inode = self.inodes.get(ino)
        await self._fresh(inode, ttl=0 if not inode.complete else None)
        if changes.size is not None:
            if not inode.attr.is_reg:
                raise IsADirectory(inode.path or "") if inode.attr.is_dir \
                    else InvalidArgument("truncate of a non-regular file")
            await self._truncate(inode, changes.size)
            await self._settle_pages(inode)  # the file is dirty now: no new pushes
            if fh is not None:
                self.handles.file(fh).wrote = True
        attr = inode.attr
        now = now_ns()
        touched = False
        if changes.mode is not None:
            attr = attr.with_(mode=(attr.mode & ~0o7777) | (changes.mode & 0o7777))
            touched = True
        if changes.uid is not None and changes.uid != -1 and changes.uid != 0xFFFFFFFF:
            attr = attr.with_(uid=changes.uid)
            touched = True
        if changes.gid is not None and changes.gid != -1 and changes.gid != 0xFFFFFFFF:
            attr = attr.with_(gid=changes.gid)
            touched = True
        if changes.mtime_ns is not None:
            attr = attr.with_(mtime_ns=changes.mtime_ns)
            touched = True
        explicit_atime = changes.atime_ns is not None
        if explicit_atime:
            assert changes.atime_ns is not None
            attr = attr.with_(atime_ns=changes.atime_ns)
            touched = True
        if not touched:
            if changes.size is not None and inode.opens == 0 and inode.dirty is not None:
                await self._flush_inode(inode)  # `truncate -s N file`: nobody will close it
            return inode
        inode.attr = attr.with_(ctime_ns=now)
        await self._store_attrs(inode, atime=explicit_atime)
        if changes.size is not None and inode.opens == 0 and inode.dirty is not None:
            await self._flush_inode(inode)
        return inode

    async def _store_attrs(self, inode: Inode, *, atime: bool = False) -> None:
        """Persist ``inode.attr`` and ``inode.xattrs`` (now, or with the pending upload)."""
        md = self._metadata(inode, atime=atime)
        df = inode.dirty
        if df is not None and not df.clean:
            df.set_metadata(md)
            return
        if inode.ino == ROOT_INO and not self.caps.real_directories:
            return  # a bucket root has no object to hold them: kept for this mount only
        key = self._key(inode)
        if inode.attr.is_dir and inode.implicit:
            meta = _dir_marker(await self.backend.make_dir(key, md))
        else:
            cond = inode.meta.etag if (inode.meta is not None and self.caps.conditional_put
                                       and inode.meta.etag and not inode.attr.is_dir) else None
            meta = _dir_marker(await self.backend.set_metadata(key, md, if_match=cond))
        attr, xattrs = inode.attr, inode.xattrs
        meta = dataclasses.replace(meta, metadata=md, metadata_complete=True)
        self._apply_meta(inode, meta)
        # the store echoes what we sent; keep our exact values (ns mtime, forced fields)
        inode.attr = attr.with_(size=inode.attr.size)
        inode.xattrs = xattrs
        inode.complete = True
        if df is not None:
            df.set_metadata(md)
            df.uploaded(df.generation, self.writeback.base_reader(inode.path or "", meta),
                        meta.etag)
        if inode.kernel_etag is not None:
            inode.kernel_etag = meta.etag  # the bytes did not change
        if inode.path:
            # the parent's cached listing must not bring the old attributes back
            self.cache.added(inode.path, meta, inode.attr.is_dir)

    async def _truncate(self, inode: Inode, size: int) -> None:
        if size == inode.attr.size and inode.dirty is None:
            return
        df = self._ensure_dirty(inode)
        async with df.lock:
            shrink = size < df.size
            df.truncate(size)
            if shrink:
                self.writeback.drop_stream(df)
        now = now_ns()
        inode.attr = inode.attr.with_(size=size, mtime_ns=now, ctime_ns=now)

    # ---------------------------------------------------------------------------------------
    # dirty files

    def _content_type(self, inode: Inode) -> str:
        if inode.meta is not None and inode.meta.content_type:
            return inode.meta.content_type
        guessed = mimetypes.guess_type(inode.path or "")[0]
        return guessed or "application/octet-stream"

    def _ensure_dirty(self, inode: Inode) -> DirtyFile:
        """The inode's dirty file, created over its current version if it has none.
        Synchronous, so no other request can slip in between the check and the creation."""
        if inode.dirty is not None:
            return inode.dirty
        assert inode.path is not None
        meta = inode.meta if not inode.local_only else None
        base: VersionReader | None = None
        if meta is not None and meta.size > 0:
            base = self.writeback.base_reader(inode.path, meta)
        expect = Expect(meta.etag) if meta is not None else Expect(absent=True)
        df = self.writeback.create(
            inode.path, inode.attr.size, base=base,
            base_etag=meta.etag if meta is not None else None, expect=expect,
            metadata=self._metadata(inode), content_type=self._content_type(inode))
        inode.dirty = df
        return df

    async def _flush_inode(self, inode: Inode, *, durable: bool = True) -> bool:
        """Upload the inode's changes; ``durable``: on the store's disk, not just visible
        (matters for file://; remote stores are durable when they answer).  Returns
        whether it uploaded."""
        df = inode.dirty
        if df is None:
            return False
        async with df.lock:
            if df.clean:
                return False
            await self.writeback.upload(df, durable=durable)
            return True

    def _uploaded(self, df: DirtyFile, meta: ObjectMeta) -> None:
        inode = self.inodes.at(df.key)
        if inode is None or inode.dirty is not df:
            return
        inode.meta = meta
        self.inodes.set_local_only(inode, False)
        inode.checked = trio.current_time()
        inode.complete = True
        if self.attrs is not None:
            self.attrs.record(dataclasses.replace(meta, key=df.key, metadata=dict(df.metadata),
                                                  metadata_complete=True))
        if inode.kernel_etag is not None or inode.opens:
            inode.kernel_etag = meta.etag  # the kernel's pages are what we just uploaded
        if meta.size != inode.attr.size and df.clean:
            inode.attr = inode.attr.with_(size=meta.size)
        self.cache.added(df.key, meta, False)
        if inode.opens == 0 and df.clean:
            df.discard()
            inode.dirty = None
            self.inodes.drop_if_unused(inode)

    def _conflicted(self, df: DirtyFile, conflict_key: str) -> None:
        inode = self.inodes.at(df.key)
        df.stop_journal()
        df.orphan = True
        self.writeback.drop_stream(df)
        if inode is not None and inode.dirty is df:
            # show the other client's version from now on
            inode.dirty = None
            inode.complete = False
            self.inodes.set_local_only(inode, False)
            inode.kernel_etag = None
            if inode.opens == 0:
                df.discard()
        elif inode is None or inode.opens == 0:
            df.discard()
        self.cache.invalidate(df.key)
        self.cache.added(conflict_key, None, False)

    async def _detach_content(self, inode: Inode) -> None:
        """Before ``inode``'s object is deleted or overwritten: if it is open, keep its bytes
        for the open handles (a local copy), since the store will not have them any more."""
        df = inode.dirty
        if df is not None and df.uploading:
            # an upload in flight (a background one, after close) would land after the
            # delete and bring the object back: let it finish, then delete what it made
            async with df.lock:
                pass
            df = inode.dirty  # None if that upload left nothing local to keep
        if df is not None:
            df.stop_journal()
            df.orphan = True
            self.writeback.unschedule(df)
            self.writeback.drop_stream(df)
            if inode.opens == 0:
                df.discard()
                inode.dirty = None
            return
        if inode.opens == 0 or inode.attr.is_dir:
            return
        if self.caps.local and all(h.version is not None
                                   for h in self.handles.files.values() if h.inode is inode):
            return  # every handle holds a descriptor of the old file: it stays readable
        df = self._ensure_dirty(inode)
        df.stop_journal()
        df.orphan = True
        size = df.size
        step = self.fetcher.page_size
        async with df.lock:
            for start in range(0, size, step):
                end = min(size, start + step)
                if not df.valid.contains(start, end):
                    df.write(start, await df.read(start, end))
            if df.base is not None:
                df.base.close()
                df.base = None
            df.base_limit = 0

    # ---------------------------------------------------------------------------------------
    # namespace operations

    def _new_attr(self, kind: int, mode: int, uid: int, gid: int, size: int = 0) -> Attr:
        now = now_ns()
        return Attr(kind | (mode & 0o7777), uid, gid, size, now, now, now)

    def _touch_dir(self, parent: Inode) -> None:
        now = now_ns()
        parent.attr = parent.attr.with_(mtime_ns=now, ctime_ns=now)

    async def mkdir(self, parent_ino: int, name: str, mode: int, uid: int, gid: int) -> Inode:
        self._count("mkdir")
        self._writable()
        parent = self.inodes.get(parent_ino)
        path = self.check_name(name, parent)
        if await self._resolve(parent, name) is not None:
            raise AlreadyExists(path)
        attr = self._new_attr(stat.S_IFDIR, mode, uid, gid)
        probe = Inode(0, path, attr)
        meta = _dir_marker(await self.backend.make_dir(path + "/", self._metadata(probe)))
        inode = self.inodes.add(path, attr)
        self._apply_meta(inode, meta)
        inode.attr = attr
        inode.complete = True
        inode.implicit = False
        self.cache.added(path, meta, True)
        # a directory this mount just made is empty: lookups in it need not ask the store
        # (until dir_timeout; every entry made here is added to this listing)
        self.cache.put_listing(path, {})
        self._touch_dir(parent)
        return inode

    async def symlink(self, parent_ino: int, name: str, target: bytes, uid: int,
                      gid: int) -> Inode:
        self._count("symlink")
        self._writable()
        parent = self.inodes.get(parent_ino)
        path = self.check_name(name, parent)
        if await self._resolve(parent, name) is not None:
            raise AlreadyExists(path)
        attr = self._new_attr(stat.S_IFLNK, 0o777, uid, gid, len(target))
        probe = Inode(0, path, attr)
        meta = await self.backend.put(path, target, self._metadata(probe),
                                      content_type="application/octet-stream",
                                      if_none_match=self.caps.conditional_put)
        inode = self.inodes.add(path, attr)
        self._apply_meta(inode, meta)
        inode.attr = attr
        inode.symlink_target = target
        inode.complete = True
        self.cache.added(path, meta, False)
        self._touch_dir(parent)
        return inode

    async def readlink(self, ino: int) -> bytes:
        inode = self.inodes.get(ino)
        if not inode.attr.is_symlink:
            raise InvalidArgument("not a symlink")
        if inode.symlink_target is None:
            assert inode.path is not None
            size = inode.meta.size if inode.meta is not None else inode.attr.size
            inode.symlink_target = await self.backend.get_range(inode.path, 0, max(size, 1))
        return inode.symlink_target

    async def link(self, ino: int, parent_ino: int, name: str) -> Inode:
        raise NotPermitted("hard links are not supported on object stores")

    async def unlink(self, parent_ino: int, name: str) -> None:
        self._count("unlink")
        self._writable()
        parent = self.inodes.get(parent_ino)
        inode = await self._resolve(parent, name)
        if inode is None:
            raise NotFound(_join(parent.path or "", name))
        if inode.attr.is_dir:
            raise IsADirectory(inode.path or "")
        path = inode.path
        assert path is not None
        await self._detach_content(inode)
        if not inode.local_only:
            await self.backend.delete(path)
        self.inodes.detach(inode)
        self.cache.removed(path)
        self._touch_dir(parent)
        await self._keep_dir(parent)

    async def _keep_dir(self, parent: Inode) -> None:
        """On flat stores, give a directory that existed only as a prefix a marker once it
        is empty, so it does not disappear."""
        if self.caps.real_directories or not parent.implicit or parent.ino == ROOT_INO:
            return
        assert parent.path is not None
        prefix = parent.path + "/"
        page = await self.backend.list_page(prefix, limit=1)
        if page.objects or page.prefixes or self._has_pending_children(parent.path):
            return
        meta = _dir_marker(await self.backend.make_dir(prefix, self._metadata(parent)))
        attr = parent.attr
        self._apply_meta(parent, meta)
        parent.attr = attr
        parent.implicit = False

    def _has_pending_children(self, path: str) -> bool:
        return bool(self.inodes.local_below(path))

    async def rmdir(self, parent_ino: int, name: str) -> None:
        self._count("rmdir")
        self._writable()
        parent = self.inodes.get(parent_ino)
        inode = await self._resolve(parent, name)
        if inode is None:
            raise NotFound(_join(parent.path or "", name))
        if not inode.attr.is_dir:
            raise NotADirectory(inode.path or "")
        path = inode.path
        assert path is not None
        await self._require_empty(path)
        await self.backend.remove_dir(path + "/")
        self.inodes.detach(inode)
        self.cache.removed(path)
        self._touch_dir(parent)
        await self._keep_dir(parent)

    async def _require_empty(self, path: str) -> None:
        if self._has_pending_children(path):
            raise NotEmpty(path)
        if self.caps.real_directories:
            return  # remove_dir says NotEmpty itself
        page = await self.backend.list_page(path + "/", limit=2)
        if page.prefixes or any(o.key != path + "/" for o in page.objects):
            raise NotEmpty(path)

    # ---------------------------------------------------------------------------------------
    # rename

    async def rename(self, old_parent: int, old_name: str, new_parent: int, new_name: str,
                     flags: int = 0) -> None:
        self._count("rename")
        self._writable()
        sp = self.inodes.get(old_parent)
        dp = self.inodes.get(new_parent)
        src = await self._resolve(sp, old_name)
        if src is None:
            raise NotFound(_join(sp.path or "", old_name))
        dst_path = self.check_name(new_name, dp)
        dst = await self._resolve(dp, new_name)
        assert src.path is not None
        src_path = src.path
        if dst is src:
            return
        if flags & RENAME_EXCHANGE:
            if dst is None:
                raise NotFound(dst_path)
            await self._exchange(src, dst)
            return
        if dst is not None and flags & RENAME_NOREPLACE:
            raise AlreadyExists(dst_path)
        if dst_path.startswith(src_path + "/"):
            raise InvalidArgument("cannot move a directory into itself")
        if src.attr.is_dir:
            if dst is not None:
                if not dst.attr.is_dir:
                    raise NotADirectory(dst_path)
                await self._require_empty(dst_path)
            await self._rename_tree(src, src_path, dst_path, dst)
        else:
            if dst is not None and dst.attr.is_dir:
                raise IsADirectory(dst_path)
            await self._rename_file(src, src_path, dst_path, dst)
        self._touch_dir(sp)
        self._touch_dir(dp)
        await self._keep_dir(sp)

    async def _rename_file(self, src: Inode, src_path: str, dst_path: str,
                           dst: Inode | None) -> None:
        if dst is not None:
            await self._detach_content(dst)
        df = src.dirty
        if df is not None:
            async with df.lock:
                if src.local_only and not df.clean:
                    # never uploaded: the name only changes locally
                    self._move_pending(src, df, dst_path, dst)
                    return
                if not df.clean:
                    await self.writeback.upload(df)
        meta = await self.backend.rename(src_path, dst_path)
        if dst is not None:
            self.inodes.detach(dst)
        self.inodes.move(src_path, dst_path)
        if src.dirty is not None:
            src.dirty.key = dst_path
            src.dirty.expect = Expect(meta.etag) if self.caps.conditional_put else Expect()
            if src.dirty.base is not None:
                src.dirty.base.close()
            src.dirty.base = self.writeback.base_reader(dst_path, meta)
            src.dirty.base_etag = meta.etag
            src.dirty.save_state()
        attr = src.attr
        self._apply_meta(src, meta)
        src.attr = attr
        src.complete = True
        if src.kernel_etag is not None:
            src.kernel_etag = meta.etag
        self.cache.removed(src_path)
        self.cache.added(dst_path, meta, False)

    def _move_pending(self, src: Inode, df: DirtyFile, dst_path: str, dst: Inode | None) -> None:
        old = df.key
        expect = Expect(absent=True)
        if dst is not None and dst.meta is not None and not dst.local_only:
            expect = Expect(dst.meta.etag) if self.caps.conditional_put else Expect()
        elif dst is None and not self.caps.conditional_put:
            expect = Expect()
        if dst is not None:
            self.inodes.detach(dst)
        self.inodes.move(old, dst_path)
        df.key = dst_path
        df.expect = expect
        self.inodes.set_local_only(src, expect.absent or dst is None)
        df.save_state()
        self.cache.removed(old)
        self.cache.added(dst_path, None, False)

    async def _flush_tree(self, path: str) -> None:
        for inode in self.inodes.below(path):
            if inode.dirty is not None and not inode.dirty.clean and not inode.dirty.orphan:
                await self._flush_inode(inode)

    async def _rename_tree(self, src: Inode, src_path: str, dst_path: str,
                           dst: Inode | None) -> None:
        await self._flush_tree(src_path)
        if self.caps.dir_rename:
            await self.backend.rename(src_path + "/", dst_path + "/")
        elif self.caps.real_directories:
            if dst is not None:
                await self.backend.remove_dir(dst_path + "/")
            await self._move_real_tree(src_path, dst_path)
        else:
            if dst is not None and not dst.implicit:
                await self.backend.delete(dst_path + "/")
            # ``swift:``: a top-level directory is a container, not a marker object
            src_top = self.caps.containers and "/" not in src_path
            dst_top = self.caps.containers and "/" not in dst_path
            if (dst_top and dst is None) or (src_top and not dst_top):
                # a new container must exist before objects go in; a container moved
                # below one has no marker to copy, and an empty one would vanish
                await self.backend.make_dir(dst_path + "/", self._metadata(src))
            await self._move_flat_tree(src_path, dst_path, copy_marker=not dst_top)
            if src_top:
                await self.backend.remove_dir(src_path + "/")  # the emptied container
        if dst is not None:
            self.inodes.detach(dst)
        self.inodes.move(src_path, dst_path)
        self.cache.forget_tree(src_path)
        self.cache.forget_tree(dst_path)
        self.cache.removed(src_path)
        self.cache.added(dst_path, None, True)
        for inode in [src, *self.inodes.below(dst_path)]:
            inode.checked = 0.0  # keys changed: look again when asked
            if inode.dirty is not None and inode.dirty.clean:
                inode.dirty.key = inode.path or ""

    async def _move_flat_tree(self, src: str, dst: str, *, copy_marker: bool = True) -> None:
        """Server-side copy of every key below ``src/`` to ``dst/`` (the marker ``src/``
        itself only if ``copy_marker``), then delete them: a failure before the deletes
        leaves every source in place.  The destination holds nothing (the caller checked
        it is absent or empty), and the listing tells the store what it needs about each
        source, so each object costs a copy and a delete."""
        listed: list[ObjectMeta] = []
        async for page in self.backend.list(src + "/", delimiter=""):
            listed += page.objects
        limiter = trio.CapacityLimiter(TREE_PARALLEL)

        async def move(obj: ObjectMeta) -> None:
            async with limiter:
                await self.backend.copy_listed(obj, dst + obj.key[len(src):])

        async with fan_out() as nursery:
            for obj in listed:
                if copy_marker or obj.key != src + "/":
                    nursery.start_soon(move, obj)
        await self.backend.delete_listed(listed)

    async def _move_real_tree(self, src: str, dst: str) -> None:
        """Stores with real directories and no tree rename (Manta): make the new directory,
        move its entries (SnapLink or copy, then delete), recurse, remove the old one."""
        meta = await self.backend.head(src + "/")
        await self.backend.make_dir(dst + "/", meta.metadata)
        entries: list[ObjectMeta] = []
        async for page in self.backend.list(src + "/"):
            entries += [o for o in page.objects if o.key != src + "/"]
        limiter = trio.CapacityLimiter(TREE_PARALLEL)

        async def move(obj: ObjectMeta) -> None:
            name = obj.key[len(src) + 1:].rstrip("/")
            if obj.is_dir:
                await self._move_real_tree(f"{src}/{name}", f"{dst}/{name}")
            else:
                async with limiter:
                    await self.backend.rename(f"{src}/{name}", f"{dst}/{name}")

        async with fan_out() as nursery:
            for obj in entries:
                nursery.start_soon(move, obj)
        await self.backend.remove_dir(src + "/")

    async def _exchange(self, a: Inode, b: Inode) -> None:
        assert a.path is not None and b.path is not None
        pa, pb = a.path, b.path
        for inode in (a, b):
            if inode.dirty is not None and not inode.dirty.clean:
                await self._flush_inode(inode)
        if self.caps.atomic_exchange:
            await self.backend.exchange(pa, pb)
        elif a.attr.is_dir or b.attr.is_dir:
            raise InvalidArgument("RENAME_EXCHANGE of directories needs an atomic store")
        else:
            tmp = f"{pa}.storefs-exchange-{os.getpid()}-{a.ino}"
            await self.backend.copy(pa, tmp)
            await self.backend.copy(pb, pa)
            await self.backend.copy(tmp, pb)
            await self.backend.delete(tmp)
        self.inodes.move(pa, "\0exchange")
        self.inodes.move(pb, pa)
        self.inodes.move("\0exchange", pb)
        for inode in (a, b):
            inode.checked = 0.0
            inode.complete = False
            inode.kernel_etag = None
        for p in (pa, pb):
            self.cache.forget_tree(p)  # their listings swapped too

    # ---------------------------------------------------------------------------------------
    # files

    def _reader(self, inode: Inode) -> VersionReader | None:
        meta = inode.meta
        if meta is None or inode.path is None:
            return None
        if self.caps.local:
            path = self.backend.local_path(inode.path)
            assert path is not None
            return LocalVersion(path, meta.size)
        return RemoteVersion(self.fetcher, inode.path, meta.etag, meta.size)

    async def open(self, ino: int, flags: int) -> tuple[FileHandle, bool]:
        """Returns the handle and whether the kernel may keep its cached pages."""
        self._count("open")
        inode = self.inodes.get(ino)
        if inode.attr.is_dir:
            raise IsADirectory(inode.path or "")
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        if writable or flags & os.O_TRUNC:
            self._writable()
        # close-to-open: see the store's current version (unless checked just now);
        # a writer needs the full metadata it will write back
        await self._fresh(inode, ttl=self.opts.attr_timeout)
        if inode.path is None:
            raise NotFound("the file was removed")
        if writable and flags & os.O_TRUNC:
            await self._truncate(inode, 0)
        current = inode.meta.etag if inode.meta is not None else None
        keep = inode.dirty is not None or (current is not None and inode.kernel_etag == current)
        inode.kernel_etag = current
        handle = FileHandle(self.handles.new_id(), inode, flags,
                            ReadAhead(self.opts.readahead_pages))
        if writable and flags & os.O_TRUNC:
            handle.wrote = True
        self._open_reader(handle)
        self.handles.files[handle.fh] = handle
        inode.opens += 1
        inode.writers += writable
        # after the handle counts as a writer and the kernel's version is set, before the
        # kernel hears of the open (and drops stale pages unless ``keep``)
        await self._settle_pages(inode)
        return handle, keep

    def _open_reader(self, handle: FileHandle) -> None:
        if handle.inode.dirty is None and not handle.inode.local_only:
            try:
                handle.version = self._reader(handle.inode)
            except OSError as exc:
                raise NotFound(f"{handle.inode.path}: {exc.strerror}") from exc
            version = handle.version
            # O_DIRECT reads bypass the page cache: nothing to fill
            if (self.kernel_pages is not None and isinstance(version, RemoteVersion)
                    and not handle.flags & os.O_DIRECT):
                version.on_read = functools.partial(self.kernel_pages.offer, handle.inode,
                                                    version.etag)

    async def create(self, parent_ino: int, name: str, mode: int, flags: int, uid: int,
                     gid: int) -> tuple[FileHandle, Inode]:
        self._count("create")
        self._writable()
        parent = self.inodes.get(parent_ino)
        path = self.check_name(name, parent)
        existing = await self._resolve(parent, name)
        if existing is not None:
            if flags & os.O_EXCL:
                raise AlreadyExists(path)
            if existing.attr.is_dir:
                raise IsADirectory(path)
            handle, _ = await self.open(existing.ino, flags)
            return handle, existing
        attr = self._new_attr(stat.S_IFREG, mode, uid, gid)
        inode = self.inodes.add(path, attr)
        self.inodes.set_local_only(inode, True)
        inode.complete = True
        inode.checked = trio.current_time()
        try:
            if flags & os.O_EXCL and self.caps.conditional_put:
                # a real exclusive create: claim the name in the store now (lock files)
                meta = await self.backend.put(path, b"", self._metadata(inode),
                                              content_type=self._content_type(inode),
                                              if_none_match=True)
                inode.meta = meta
                self.inodes.set_local_only(inode, False)
            self._ensure_dirty(inode)
        except BaseException:
            self.inodes.detach(inode)
            raise
        self.cache.added(path, None, False)
        self._touch_dir(parent)
        handle = FileHandle(self.handles.new_id(), inode, flags,
                            ReadAhead(self.opts.readahead_pages), wrote=True)
        self.handles.files[handle.fh] = handle
        inode.opens += 1
        inode.writers += (flags & os.O_ACCMODE) != os.O_RDONLY
        return handle, inode

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        handle = self.handles.file(fh)
        inode = handle.inode
        df = inode.dirty
        if df is not None:
            return await df.read(offset, offset + size, handle.ahead)
        if handle.version is None:
            self._open_reader(handle)
            if handle.version is None:
                return b""
        return await handle.version.read(offset, offset + size, handle.ahead)

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        handle = self.handles.file(fh)
        inode = handle.inode
        self._writable()
        df = self._ensure_dirty(inode)
        async with df.lock:
            if inode.dirty is not df:
                df = self._ensure_dirty(inode)  # uploaded and discarded while we waited
            if len(data) >= THREAD_WRITE:
                await df.write_in_thread(offset, data)
            else:
                df.write(offset, data)
            self.writeback.after_write(df, offset, offset + len(data))
        now = now_ns()
        inode.attr = inode.attr.with_(size=df.size, mtime_ns=now, ctime_ns=now)
        handle.wrote = True
        return len(data)

    async def flush(self, fh: int) -> None:
        handle = self.handles.file(fh)
        if handle.wrote and self.opts.sync_close:
            # close-to-open needs the data visible; fsync is what makes it durable
            await self._flush_inode(handle.inode, durable=False)
        # sync_close=false: release hands the file to background write-back

    async def fsync(self, fh: int, datasync: bool = False) -> None:
        handle = self.handles.file(fh)
        inode = handle.inode
        if not await self._flush_inode(inode) and self.caps.local and inode.path \
                and not inode.local_only:
            # uploaded before by a close or in the background, which only make the data
            # visible (file://): fsync is where it must reach the disk
            await self.backend.sync(inode.path)

    async def release(self, fh: int) -> None:
        handle = self.handles.files.pop(fh, None)
        if handle is None:
            return
        handle.close()
        inode = handle.inode
        inode.opens = max(0, inode.opens - 1)
        if handle.flags & os.O_ACCMODE != os.O_RDONLY:
            inode.writers = max(0, inode.writers - 1)
        df = inode.dirty
        if inode.opens == 0 and df is not None:
            if df.orphan or df.clean:
                df.discard()
                inode.dirty = None
            else:
                self.writeback.schedule(df)
        self.inodes.drop_if_unused(inode)

    # ---------------------------------------------------------------------------------------
    # directories

    async def opendir(self, ino: int) -> DirHandle:
        inode = self.inodes.get(ino)
        if not inode.attr.is_dir:
            raise NotADirectory(inode.path or "")
        if inode.path is None:
            raise NotFound("the directory was removed")
        handle = DirHandle(self.handles.new_id(), inode, inode.path)
        self.handles.dirs[handle.fh] = handle
        return handle

    async def readdir(self, fh: int, start: int) -> AsyncGenerator[tuple[str, Inode, int], None]:
        """Entries from index ``start``: ``(name, inode, next offset)``.  The caller calls
        ``remember(inode)`` for every entry the kernel accepted."""
        async with contextlib.aclosing(self.readdir_batches(fh, start)) as batches:
            async for batch in batches:
                for entry in batch:
                    yield entry

    async def readdir_batches(self, fh: int, start: int
                              ) -> AsyncGenerator[Iterator[tuple[str, Inode, int]], None]:
        """``readdir`` as runs of entries that are at hand (a cached listing, or a page just
        fetched), each run a plain iterator: a listing of 10,000 names then costs one
        asynchronous step per page, not per name.  Consume each run whole before asking for
        the next (or close the generator)."""
        self._count("readdir")
        handle = self.handles.dir(fh)
        if start == 0 and handle.started:
            handle.reset()  # rewinddir: list again
        if start == 0 and not handle.started:
            cached = self.cache.listing_entries(handle.path)
            if cached is not None:
                listing, entries = cached
                handle.fill(entries, listing.keys())
                self._add_pending(handle)
                handle.done = True
        handle.started = True
        i = start
        while True:
            while i >= len(handle.entries) and not handle.done:
                await self._next_page(handle)
            end = len(handle.entries)
            if i >= end:
                return
            yield self._entries_at(handle, i, end)
            i = end

    def _entries_at(self, handle: DirHandle, i: int, end: int
                    ) -> Iterator[tuple[str, Inode, int]]:
        now = trio.current_time()
        entries = handle.entries
        while i < end:
            name, child = entries[i]
            i += 1
            inode = self._entry_inode(_join(handle.path, name), child, now)
            if inode is not None:
                yield name, inode, i

    async def _next_page(self, handle: DirHandle) -> None:
        prefix = handle.path + "/" if handle.path else ""
        page = await self.backend.list_page(prefix, token=handle.token)
        self._count("list")
        incomplete: list[str] = []
        bare_dirs: list[str] = []
        for name, child in self._page_entries(handle.path, page):
            handle.add(name, child)
            obj = child.meta
            if obj is not None:
                path = _join(handle.path, name)
                # lookups of these names while the listing goes on need no request
                self.cache.put(path, obj)
                if not obj.metadata_complete and not obj.is_dir:
                    incomplete.append(path)
            elif child.is_dir:
                bare_dirs.append(_join(handle.path, name))
        self._prefetch_attrs(incomplete, page.objects)
        self._prefetch_dirs(bare_dirs)
        handle.token = page.next_token
        if handle.token is None:
            handle.done = True
            self._add_pending(handle)
            listing: Listing = dict(handle.entries)
            self.cache.put_listing(handle.path, listing, entries=False)

    @staticmethod
    def _page_entries(path: str, page: ListPage) -> list[tuple[str, Child]]:
        """The (name, entry) pairs a listing page of directory ``path`` holds."""
        prefix = path + "/" if path else ""
        out: list[tuple[str, Child]] = []
        for obj in page.objects:
            if obj.key == prefix:
                continue  # the directory's own marker
            name = obj.key[len(prefix):].rstrip("/")
            if _listable(name):
                out.append((name, Child(obj, obj.is_dir)))
        for p in page.prefixes:
            name = p[len(prefix):].rstrip("/")
            if _listable(name):
                out.append((name, Child(None, True)))
        return out

    def _prefetch_attrs(self, paths: list[str], objects: list[ObjectMeta]) -> None:
        """Listings of S3, Swift and Manta carry no user metadata: fetch the attributes of
        the entries ``ls -l`` is about to ask for, in parallel, before it asks (the
        ``stat`` calls then find them in flight or done)."""
        if self._nursery is None or not paths:
            return
        by_key = {o.key: o for o in objects}
        for path in paths:
            inode = self.inodes.at(path)
            if (inode is not None and inode.complete and inode.meta is not None
                    and by_key[path].etag == inode.meta.etag):
                continue  # already known for this version
            if self.attrs is not None:
                recorded = self.attrs.complete(by_key[path])
                if recorded is not None:
                    self.cache.put(path, recorded)
                    continue
            self._nursery.start_soon(self._prefetch_one, path, by_key[path].etag)

    def _prefetch_dirs(self, paths: list[str]) -> None:
        """A listing names subdirectories by prefix only, which says nothing of their
        markers' attributes: look them up in parallel before ``ls -l`` asks, one by one."""
        if self._nursery is None:
            return
        for path in paths:
            inode = self.inodes.at(path)
            if inode is not None and (inode.complete or inode.local_only):
                continue  # known from the store already (or only local so far)
            self._nursery.start_soon(self._prefetch_dir, path)

    async def _prefetch_dir(self, path: str) -> None:
        async with self._prefetch_limiter:
            inode = self.inodes.at(path)
            if inode is not None and inode.complete:
                return  # a foreground lookup came first
            try:
                # shared with a getattr asking meanwhile
                meta = await self._stat(path, listed_dir=True)
            except StorefsError as exc:
                log.debug("attribute prefetch of %s/ failed: %s", path, exc)
                return
        inode = self.inodes.at(path)
        if meta is not None and meta.is_dir and inode is not None and inode.attr.is_dir \
                and inode.dirty is None and not inode.local_only:
            self._apply_meta(inode, meta)

    async def _prefetch_one(self, path: str, etag: ETag | None) -> None:
        async with self._prefetch_limiter:
            # queued behind others: a foreground lookup may have fetched it meanwhile
            known = self.cache.get(path)
            if known is not None and known.metadata_complete and known.etag == etag:
                return
            inode = self.inodes.at(path)
            if (inode is not None and inode.complete and inode.meta is not None
                    and inode.meta.etag == etag):
                return
            try:
                meta = await self._stat(path, file_only=True)
            except StorefsError as exc:
                log.debug("attribute prefetch of %s failed: %s", path, exc)
                return
        if meta is None:
            return
        self.cache.put(path, meta, listed=True)
        inode = self.inodes.at(path)
        if inode is not None and inode.dirty is None and not inode.local_only \
                and not inode.attr.is_dir:
            self._apply_meta(inode, meta)
            inode.listed = True  # as fresh as the listing that named it: trusted as long
        elif inode is None and self.attrs is not None:
            self.attrs.record(meta)  # (_apply_meta records what it applies)

    def _add_pending(self, handle: DirHandle) -> None:
        for inode in self.inodes.local_below(handle.path):
            assert inode.path is not None
            rest = inode.path[len(handle.path) + 1:] if handle.path else inode.path
            if "/" not in rest:
                handle.add(rest, Child(None, False))

    def _entry_inode(self, path: str, child: Child, now: float) -> Inode | None:
        """The inode a listing entry stands for (``now``: the trio time of the listing)."""
        inode = self.inodes.at(path)
        if inode is not None and (inode.dirty is not None or inode.local_only):
            return inode
        if inode is not None and child.meta is not None and inode.listed_as is child.meta \
                and inode.meta is inode.listed_to and inode.complete:
            # the entry this inode was last resolved from, nothing changed since: what
            # follows would come to the same, for each name of a big listing listed again
            if not inode.attr.is_dir:
                inode.listed = True  # the listing vouches for it anew
                inode.checked = now
            return inode
        inode = self._resolve_entry(path, inode, child)
        if inode is not None and child.meta is not None:
            inode.listed_as, inode.listed_to = child.meta, inode.meta
        return inode

    def _resolve_entry(self, path: str, inode: Inode | None, child: Child) -> Inode | None:
        """``_entry_inode`` for an entry not resolved before: ``inode`` is the one at
        ``path`` (if any), kept or updated from what the entry and the caches say."""
        if child.meta is None:
            if child.is_dir:
                if inode is not None and inode.attr.is_dir:
                    return inode
                known = self.cache.get(path)  # e.g. from the directory prefetch
                if known is not None and known.is_dir and known.metadata_complete:
                    return self._inode_from_meta(path, known)
                # a bare prefix: the marker (if any) may hold attributes; look when asked
                return self._inode_from_meta(path, self._implicit_dir_meta(path, known=False))
            return inode  # a pending local file that went away meanwhile
        meta = child.meta
        if not meta.metadata_complete:
            known = self.cache.get(path)  # e.g. from the attribute prefetch
            if known is not None and known.metadata_complete and known.etag == meta.etag:
                meta = known
            elif self.attrs is not None and not meta.is_dir:
                meta = self.attrs.complete(meta) or meta
        return self._inode_from_meta(path, meta, listed=True)

    async def releasedir(self, fh: int) -> None:
        self.handles.dirs.pop(fh, None)

    # ---------------------------------------------------------------------------------------
    # extended attributes

    async def getxattr(self, ino: int, name: str) -> bytes:
        self._count("getxattr")
        if not name.startswith("user."):
            # EOPNOTSUPP, not ENODATA: the namespace is not kept at all.  GNU ls and cp
            # remember that per device and stop asking (security.selinux and the ACLs of
            # every entry of an `ls -l` would each be a FUSE round trip otherwise)
            raise Unsupported(f"{name}: only user.* extended attributes are kept")
        inode = self.inodes.get(ino)
        if name.startswith(posix_meta.FACTS_PREFIX):
            facts = posix_meta.facts(inode.meta) if inode.meta is not None else {}
            if name in facts:
                return facts[name]
            raise NoAttr(name)
        await self._fresh(inode, ttl=0 if not inode.complete else None)
        value = inode.xattrs.get(name)
        if value is None:
            raise NoAttr(name)
        return value

    async def listxattr(self, ino: int) -> list[str]:
        inode = self.inodes.get(ino)
        await self._fresh(inode, ttl=0 if not inode.complete else None)
        names = sorted(inode.xattrs)
        if inode.meta is not None:
            names += sorted(posix_meta.facts(inode.meta))
        return names

    async def setxattr(self, ino: int, name: str, value: bytes, flags: int = 0) -> None:
        self._writable()
        inode = self.inodes.get(ino)
        if not name.startswith("user."):
            raise Unsupported(f"{name}: only user.* extended attributes are kept")
        if name.startswith(posix_meta.FACTS_PREFIX):
            facts = posix_meta.facts(inode.meta) if inode.meta is not None else {}
            if facts.get(name) == value:
                return
            raise NotPermitted(f"{name} is read-only: it reports what the store holds")
        await self._fresh(inode, ttl=0 if not inode.complete else None)
        if flags & 1 and name in inode.xattrs:  # XATTR_CREATE
            raise AlreadyExists(name)
        if flags & 2 and name not in inode.xattrs:  # XATTR_REPLACE
            raise NoAttr(name)
        old = dict(inode.xattrs)
        inode.xattrs = {**inode.xattrs, name: bytes(value)}
        try:
            await self._store_attrs(inode)
        except (TooLarge, NoSpace) as exc:
            inode.xattrs = old
            raise XattrTooBig(str(exc)) from exc
        except BaseException:
            inode.xattrs = old
            raise

    async def removexattr(self, ino: int, name: str) -> None:
        self._writable()
        inode = self.inodes.get(ino)
        if not name.startswith("user."):
            raise Unsupported(f"{name}: only user.* extended attributes are kept")
        if name.startswith(posix_meta.FACTS_PREFIX):
            raise NotPermitted(f"{name} is read-only")
        await self._fresh(inode, ttl=0 if not inode.complete else None)
        if name not in inode.xattrs:
            raise NoAttr(name)
        old = dict(inode.xattrs)
        inode.xattrs = {k: v for k, v in inode.xattrs.items() if k != name}
        try:
            await self._store_attrs(inode)
        except BaseException:
            inode.xattrs = old
            raise

    # ---------------------------------------------------------------------------------------
    # the whole filesystem

    async def statfs(self) -> StoreUsage:
        now = trio.current_time()
        if self._usage is None or now - self._usage[0] > 5.0:
            try:
                usage = await self.backend.statfs()
            except StorefsError:
                usage = None
            self._usage = (now, usage)
        usage = self._usage[1]
        if usage is None:
            # object stores have no fixed size: report a large, mostly free one (as s3fs)
            pib = 1 << 50
            return StoreUsage(total=pib, free=pib, files=1 << 40, files_free=1 << 40)
        return usage

    def dirty_files(self) -> list[DirtyFile]:
        found = {df.id: df for df in self.writeback.background.values()}
        for inode in self.inodes:
            if inode.dirty is not None and not inode.dirty.orphan:
                found[inode.dirty.id] = inode.dirty
        return list(found.values())

    def pending(self) -> list[DirtyFile]:
        return [df for df in self.dirty_files() if not df.clean]

    def statistics(self) -> dict[str, Any]:
        pending = self.pending()
        return {
            "inodes": len(self.inodes),
            "open_files": len(self.handles.files),
            "pending_uploads": len(pending),
            "pending_bytes": sum(df.size for df in pending),
            "operations": dict(self.counters),
            "kernel_pages": self.kernel_pages.statistics() if self.kernel_pages else {},
        }


def _dir_marker(meta: ObjectMeta) -> ObjectMeta:
    """Flat stores report a ``dir/`` marker as an object: it stands for a directory."""
    if meta.key.endswith("/") and not meta.is_dir:
        return dataclasses.replace(meta, is_dir=True, size=0)
    return meta


def _listable(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..") and \
        len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX
