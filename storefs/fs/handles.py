"""Open files and open directories."""

from __future__ import annotations

import itertools
from collections.abc import Set
from dataclasses import dataclass, field

from storefs.cache.fetch import ReadAhead, VersionReader
from storefs.errors import StorefsError
from storefs.fs.inodes import Inode, StaleInode
from storefs.fs.metacache import Child, Entries


@dataclass(eq=False)
class FileHandle:
    """One ``open()``: its inode, how it was opened, its read-ahead state, and the version
    of the object it reads while the file has no local changes (a handle keeps reading the
    version it opened, so a remote overwrite never mixes old and new bytes in it)."""

    fh: int
    inode: Inode
    flags: int
    ahead: ReadAhead
    version: VersionReader | None = None
    #: this handle changed the file (its close uploads)
    wrote: bool = False

    def close(self) -> None:
        if self.version is not None:
            self.version.close()
            self.version = None


@dataclass(eq=False)
class DirHandle:
    """One ``opendir()``: the entries listed so far, in a fixed order, so the offsets the
    kernel gets back (index + 1) stay valid while later pages are fetched."""

    fh: int
    inode: Inode
    path: str
    entries: Entries = field(default_factory=list)
    seen: Set[str] = field(default_factory=set)
    token: str | None = None
    done: bool = False
    started: bool = False

    def add(self, name: str, child: Child) -> None:
        if name in self.seen:
            return  # a file and a prefix of the same name: the first one listed wins
        if not isinstance(self.seen, set):
            # ``fill`` gave it the metadata cache's entries and names: copied before a change
            self.entries = list(self.entries)
            self.seen = set(self.seen)
        self.seen.add(name)
        self.entries.append((name, child))

    def fill(self, entries: Entries, names: Set[str]) -> None:
        """All of a directory's entries at once, from a cached listing: ``entries`` and
        ``names`` are shared with the cache (a big directory is not copied per opendir)."""
        self.entries = entries
        self.seen = names

    def reset(self) -> None:
        self.entries = []
        self.seen = set()
        self.token = None
        self.done = False


class HandleTable:
    def __init__(self) -> None:
        self.files: dict[int, FileHandle] = {}
        self.dirs: dict[int, DirHandle] = {}
        self._next = itertools.count(1)

    def new_id(self) -> int:
        return next(self._next)

    def file(self, fh: int) -> FileHandle:
        h = self.files.get(fh)
        if h is None:
            raise StaleInode(f"file handle {fh} is not open")
        return h

    def dir(self, fh: int) -> DirHandle:
        h = self.dirs.get(fh)
        if h is None:
            raise StaleInode(f"directory handle {fh} is not open")
        return h


__all__ = ["DirHandle", "FileHandle", "HandleTable", "StorefsError"]
