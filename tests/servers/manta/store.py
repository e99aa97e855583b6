"""The namespace (SQLite) and the object bytes (one file per entry) of the test server.

Every entry is a row keyed by its normalised path (``/jill/stor/a/b``) with its parent and
name, so a directory listing is an indexed range scan in byte-wise UTF-8 order (SQLite's
BINARY collation).  Object bytes live in ``ROOT/blobs/<uuid>``: written to a temporary file
while the request streams in, then renamed into place when the entry is committed.  An
object made by a multipart upload keeps its parts' files as its segments (``+id:size,...``)
instead of copying them into one file.  A
SnapLink (v1) hard-links the source's blob, so later writes of either name never touch the
other, as on Manta.  All namespace changes happen under one lock; bytes move outside it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers.manta.errors import MantaError

DIR_TYPE = "application/x-json-stream; type=directory"
#: the four real roots of every account
ROOTS = ("stor", "public", "uploads", "reports")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
  path TEXT PRIMARY KEY, parent TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
  mtime INTEGER NOT NULL, etag TEXT, size INTEGER, md5 TEXT, content_type TEXT,
  durability INTEGER, blob TEXT, headers TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS by_name ON entries (parent, name);
CREATE INDEX IF NOT EXISTS by_mtime ON entries (parent, mtime);
CREATE TABLE IF NOT EXISTS uploads (id TEXT PRIMARY KEY, record TEXT NOT NULL);
"""


@dataclass
class Entry:
    path: str
    type: str  # "directory" | "object"
    mtime: int  # milliseconds since the epoch
    headers: dict[str, str] = field(default_factory=dict)  # m-*, role-tag, cache-control...
    etag: str | None = None
    size: int = 0
    md5: str | None = None  # base64
    content_type: str = DIR_TYPE
    durability: int = 2
    blob: str | None = None

    @property
    def is_dir(self) -> bool:
        return self.type == "directory"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def now_ms() -> int:
    return int(time.time() * 1000)


class Store:
    """Thread-safe namespace + blobs under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(root / "namespace.sqlite", check_same_thread=False,
                                  isolation_level=None)
        # a test server: speed over crash safety
        self.db.execute("PRAGMA journal_mode=MEMORY")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.executescript(_SCHEMA)

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self.lock:
            self.db.execute("BEGIN")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def ensure_account(self, login: str) -> None:
        with self.locked():
            for name in ROOTS:
                path = f"/{login}/{name}"
                if self.get(path) is None:
                    self.put_entry(Entry(path, "directory", now_ms()))

    # -- rows ---------------------------------------------------------------------------

    @staticmethod
    def _row(row: tuple[Any, ...]) -> Entry:
        path, type_, mtime, etag, size, md5, ctype, durability, blob, headers = row
        return Entry(path, type_, mtime, json.loads(headers), etag, size or 0, md5,
                     ctype or DIR_TYPE, durability if durability is not None else 2, blob)

    _COLS = "path, type, mtime, etag, size, md5, content_type, durability, blob, headers"

    def get(self, path: str) -> Entry | None:
        with self.lock:
            row = self.db.execute(f"SELECT {self._COLS} FROM entries WHERE path = ?",
                                  (path,)).fetchone()
        return None if row is None else self._row(row)

    def put_entry(self, e: Entry) -> None:
        with self.lock:
            self.db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (e.path, parent_of(e.path), e.name, e.type, e.mtime, e.etag, e.size, e.md5,
                 e.content_type, e.durability, e.blob, json.dumps(e.headers)))

    def remove_entry(self, e: Entry) -> None:
        with self.lock:
            self.db.execute("DELETE FROM entries WHERE path = ?", (e.path,))
        self.discard(e.blob)

    def has_children(self, path: str) -> bool:
        with self.lock:
            return self.db.execute("SELECT 1 FROM entries WHERE parent = ? LIMIT 1",
                                   (path,)).fetchone() is not None

    def count_children(self, path: str, only: str | None) -> int:
        sql, args = "SELECT COUNT(*) FROM entries WHERE parent = ?", [path]
        if only:
            sql += " AND type = ?"
            args.append(only)
        with self.lock:
            n: int = self.db.execute(sql, args).fetchone()[0]
        return n

    def children(self, path: str, *, limit: int, marker: str | int | None, sort: str,
                 reverse: bool, only: str | None) -> list[Entry]:
        """One page of a listing; ``marker`` is inclusive (a name, or ms for sort=mtime)."""
        column = "mtime" if sort == "mtime" else "name"
        # name ascends by default, mtime descends (newest first); reverse flips either
        descending = (sort == "mtime") != reverse
        sql, args = f"SELECT {self._COLS} FROM entries WHERE parent = ?", [path]
        if only:
            sql += " AND type = ?"
            args.append(only)
        if marker is not None:
            sql += f" AND {column} {'<=' if descending else '>='} ?"
            args.append(marker)
        order = "DESC" if descending else "ASC"
        sql += f" ORDER BY {column} {order}, name {order} LIMIT ?"
        args.append(limit)
        with self.lock:
            rows = self.db.execute(sql, args).fetchall()
        return [self._row(r) for r in rows]

    # -- blobs --------------------------------------------------------------------------

    def blob_path(self, blob: str) -> Path:
        return self.blobs / blob

    def new_tmp(self) -> Path:
        return self.tmp / uuid.uuid4().hex

    def adopt(self, tmp: Path) -> str:
        """Move a finished temporary file into the blob area; returns its blob id."""
        blob = uuid.uuid4().hex
        os.replace(tmp, self.blob_path(blob))
        return blob

    def segments(self, blob: str) -> list[tuple[Path, int | None]]:
        """The files of a blob and their sizes (None: the whole file)."""
        if not blob.startswith("+"):
            return [(self.blob_path(blob), None)]
        out: list[tuple[Path, int | None]] = []
        for seg in blob[1:].split(","):
            name, _, size = seg.partition(":")
            out.append((self.blob_path(name), int(size)))
        return out

    def compose(self, parts: list[tuple[str, int]]) -> str:
        """A blob made of hard links to the given (blob, size) files, in order."""
        segs = []
        for blob, size in parts:
            new = uuid.uuid4().hex
            os.link(self.blob_path(blob), self.blob_path(new))
            segs.append(f"{new}:{size}")
        return "+" + ",".join(segs)

    def link_blob(self, blob: str) -> str:
        """A new blob sharing the bytes (hard links: later writes of either never touch
        the other, because writes always make new files)."""
        if blob.startswith("+"):
            return self.compose([(p.name, size or 0) for p, size in self.segments(blob)])
        new = uuid.uuid4().hex
        os.link(self.blob_path(blob), self.blob_path(new))
        return new

    def discard(self, blob: str | None) -> None:
        if blob:
            for path, _ in self.segments(blob):
                path.unlink(missing_ok=True)

    # -- uploads ------------------------------------------------------------------------

    def get_upload(self, upload_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.execute("SELECT record FROM uploads WHERE id = ?",
                                  (upload_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put_upload(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO uploads VALUES (?, ?)",
                            (record["id"], json.dumps(record)))

    def require_parent_dir(self, path: str) -> None:
        """PutObject/PutDirectory parent rules (§3.1)."""
        parent = parent_of(path)
        p = self.get(parent)
        if p is None:
            raise MantaError("DirectoryDoesNotExist", f"{parent} does not exist")
        if not p.is_dir:
            raise MantaError("ParentNotDirectory", f"{parent} is not a directory")
