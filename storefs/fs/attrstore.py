"""A persistent record of the metadata of objects this mount has seen, so listings without
metadata (S3, Swift, Manta) need no HEAD per entry.

Listings of those stores give each object's size, etag and modification time but not the
user metadata where POSIX modes, owners and mtimes live.  Every complete ``ObjectMeta``
the mount learns (a HEAD, an upload, a metadata change) is recorded here with that
*fingerprint*; a later listing entry with the same fingerprint gets the recorded metadata,
as good as a HEAD.  A change by another client changes the fingerprint (new content: new
etag; metadata only: the store's modification time moves), so it is never hidden, except
a metadata-only change within ``MTIME_SLACK`` seconds of the one recorded (the store's
clock and the time this mount recorded can differ by that much).

The record is an SQLite file in the mount's cache directory (a cache: written without
fsync, rebuilt from HEADs if lost), capped in rows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from pathlib import Path

from storefs.backends.base import ObjectMeta

log = logging.getLogger(__name__)

#: seconds by which a listing's modification time may differ from the recorded one
MTIME_SLACK = 2.0
MAX_ROWS = 2_000_000
COMMIT_EVERY = 2.0


class AttrStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=off")
        self._db.execute(
            "create table if not exists meta (key text primary key, etag text, size integer,"
            " mtime real, content_type text, metadata text, used real)")
        self._dirty = 0
        self._commits = 0
        self._last_commit = time.monotonic()
        self._db.execute("begin")
        self.hits = 0
        self.misses = 0

    def record(self, meta: ObjectMeta) -> None:
        """Remember a complete meta (from a HEAD or a write)."""
        if not meta.metadata_complete or meta.is_dir or not meta.etag:
            return
        self._db.execute(
            "insert or replace into meta values (?, ?, ?, ?, ?, ?, ?)",
            (meta.key, meta.etag, meta.size, meta.mtime, meta.content_type,
             json.dumps(dict(meta.metadata), separators=(",", ":")), time.time()))
        self._tick()

    def forget(self, key: str) -> None:
        self._db.execute("delete from meta where key = ?", (key,))
        self._tick()

    def complete(self, meta: ObjectMeta) -> ObjectMeta | None:
        """``meta`` (a listing entry without metadata) with its recorded metadata, if the
        object is unchanged since it was recorded; None otherwise."""
        row = self._db.execute("select etag, size, mtime, content_type, metadata from meta "
                               "where key = ?", (meta.key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        etag, size, mtime, content_type, metadata = row
        if etag != meta.etag or size != meta.size or abs(mtime - meta.mtime) > MTIME_SLACK:
            self.misses += 1
            return None
        self.hits += 1
        return ObjectMeta(key=meta.key, size=meta.size, etag=meta.etag, mtime=meta.mtime,
                          content_type=meta.content_type or content_type,
                          metadata=json.loads(metadata), checksums=meta.checksums,
                          storage_class=meta.storage_class, metadata_complete=True)

    def _tick(self) -> None:
        self._dirty += 1
        now = time.monotonic()
        if self._dirty >= 5000 or now - self._last_commit > COMMIT_EVERY:
            self.commit()

    def commit(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("commit")
            self._commits += 1
            if self._commits % 500 == 0:
                self._trim()
            self._db.execute("begin")
        self._dirty = 0
        self._last_commit = time.monotonic()

    def _trim(self) -> None:
        (count,) = self._db.execute("select count(*) from meta").fetchone()
        if count > MAX_ROWS:
            self._db.execute("delete from meta where key in (select key from meta order by "
                             "used limit ?)", (count - MAX_ROWS,))

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("commit")
            self._db.close()


def open_attr_store(path: Path) -> AttrStore | None:
    """The store at ``path``, or None (and a warning) if SQLite cannot use it."""
    try:
        return AttrStore(path)
    except sqlite3.Error as exc:
        log.warning("attribute record %s unusable (%s): listings will need HEADs", path, exc)
        with contextlib.suppress(OSError):
            path.unlink()
        return None
