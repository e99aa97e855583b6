"""Inodes: what the kernel holds a reference to, and the path each one is at now.

Object stores are keyed by path, so an inode is a *name that the kernel knows*, plus the
attributes and version of what the store (or the local write-back) holds there.  Renames
move inodes (and every inode below a renamed directory) to their new paths; unlink and
rename-over *detach* an inode from its path while the kernel may still hold it (an open,
unlinked file keeps working through its handle).

Lookup counts follow the FUSE protocol: every successful lookup, create, mkdir, symlink
and accepted readdirplus entry adds one, ``forget`` subtracts; an inode is dropped when the
kernel holds no reference, no handle is open and nothing is waiting for upload.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from storefs.backends.base import ETag, ObjectMeta
from storefs.cache.dirty import DirtyFile
from storefs.errors import StorefsError
from storefs.fs.attrs import Attr

ROOT_INO = 1


class StaleInode(StorefsError):
    """The kernel asked about an inode storefs no longer knows (after a forget)."""

    import errno as _e

    errno = _e.ESTALE


class Inode:
    __slots__ = (
        "_local_only", "attr", "checked", "complete", "dirty", "fuse_entry", "implicit", "ino",
        "kernel_etag", "listed", "listed_as", "listed_to", "lookups", "meta", "opens", "path",
        "symlink_target", "writers", "xattrs",
    )

    def __init__(self, ino: int, path: str | None, attr: Attr) -> None:
        self.ino = ino
        #: the key this inode is at, without trailing "/"; None once detached
        self.path = path
        self.attr = attr
        #: the store's version (None: only local so far, or a directory with no marker)
        self.meta: ObjectMeta | None = None
        self.xattrs: dict[str, bytes] = {}
        self.symlink_target: bytes | None = None
        #: attributes come from the object's full metadata (not a listing without it)
        self.complete = True
        #: trio time of the last check against the store
        self.checked = 0.0
        #: that check was a directory listing (trusted for dir_timeout, like the listing)
        self.listed = False
        #: the listing entry (its meta object) readdir last resolved this inode from, and
        #: ``meta`` as that left it: the same entry again, with nothing changed since,
        #: resolves to the same (a cached listing of 10,000 names, listed again)
        self.listed_as: ObjectMeta | None = None
        self.listed_to: ObjectMeta | None = None
        self.lookups = 0
        self.opens = 0
        #: how many of the open handles may write
        self.writers = 0
        self.dirty: DirtyFile | None = None
        self._local_only = False
        #: a directory of a flat store that exists only as a prefix (no marker object)
        self.implicit = False
        #: version whose bytes the kernel's page cache holds (keep_cache on open)
        self.kernel_etag: ETag | None = None
        #: the FUSE layer's encoded reply for (attr, complete), reused while they hold
        self.fuse_entry: tuple[Attr, bool, object] | None = None

    def __repr__(self) -> str:
        return f"<Inode {self.ino} {self.path!r} lookups={self.lookups} opens={self.opens}>"

    @property
    def local_only(self) -> bool:
        """Created by this mount and not in the store yet (set through
        ``InodeTable.set_local_only``, which keeps the table's index of such inodes)."""
        return self._local_only

    @property
    def busy(self) -> bool:
        """Something still needs this inode object."""
        return (self.ino == ROOT_INO or self.lookups > 0 or self.opens > 0
                or (self.dirty is not None and not self.dirty.clean))


class InodeTable:
    """Inodes by number and by path."""

    def __init__(self, root: Inode) -> None:
        self._by_ino: dict[int, Inode] = {ROOT_INO: root}
        self._by_path: dict[str, Inode] = {"": root}
        #: the inodes with ``local_only`` set: a listing of the store lacks them, so every
        #: readdir adds those of its directory, and looks them up here, not among all inodes
        self._local: set[Inode] = set()
        self._next = itertools.count(ROOT_INO + 1)

    def __len__(self) -> int:
        return len(self._by_ino)

    def __iter__(self) -> Iterator[Inode]:
        return iter(list(self._by_ino.values()))

    @property
    def root(self) -> Inode:
        return self._by_ino[ROOT_INO]

    def get(self, ino: int) -> Inode:
        inode = self._by_ino.get(ino)
        if inode is None:
            raise StaleInode(f"inode {ino} is not known")
        return inode

    def at(self, path: str) -> Inode | None:
        return self._by_path.get(path)

    def add(self, path: str, attr: Attr) -> Inode:
        """A new inode at ``path`` (detaching any previous one there)."""
        old = self._by_path.get(path)
        if old is not None:
            self.detach(old)
        inode = Inode(next(self._next), path, attr)
        self._by_ino[inode.ino] = inode
        self._by_path[path] = inode
        return inode

    def detach(self, inode: Inode) -> None:
        """Take ``inode`` off its path (unlinked, or replaced by a rename)."""
        if inode.path is not None and self._by_path.get(inode.path) is inode:
            del self._by_path[inode.path]
        inode.path = None
        self.drop_if_unused(inode)

    def set_local_only(self, inode: Inode, value: bool) -> None:
        inode._local_only = value
        if value:
            self._local.add(inode)
        else:
            self._local.discard(inode)

    def local_below(self, path: str) -> list[Inode]:
        """The ``local_only`` inodes strictly below directory ``path`` ("" is the root)."""
        prefix = f"{path}/" if path else ""
        return [i for i in self._local
                if i.path is not None and i.path.startswith(prefix) and i.path != path]

    def drop_if_unused(self, inode: Inode) -> None:
        if not inode.busy:
            self._local.discard(inode)
            self._by_ino.pop(inode.ino, None)
            if inode.path is not None and self._by_path.get(inode.path) is inode:
                del self._by_path[inode.path]

    def below(self, path: str) -> list[Inode]:
        """Inodes strictly below directory ``path`` ("" is the root)."""
        prefix = f"{path}/" if path else ""
        return [i for p, i in self._by_path.items() if p.startswith(prefix) and p != path]

    def move(self, old: str, new: str) -> None:
        """Re-path the inode at ``old`` and everything below it to ``new``."""
        moving = [(p, i) for p, i in self._by_path.items()
                  if p == old or p.startswith(old + "/")]
        for p, _ in moving:
            del self._by_path[p]
        for p, inode in moving:
            np = new + p[len(old):]
            displaced = self._by_path.get(np)
            if displaced is not None and displaced is not inode:
                displaced.path = None
                self.drop_if_unused(displaced)
            inode.path = np
            self._by_path[np] = inode

    def forget(self, ino: int, count: int) -> None:
        inode = self._by_ino.get(ino)
        if inode is None:
            return
        inode.lookups = max(0, inode.lookups - count)
        self.drop_if_unused(inode)
