"""Dirty files: local changes of one file, spooled to disk until the store has them.

A ``DirtyFile`` overlays a *base* (the version of the object the changes apply to, read
through a version reader) with a sparse *spool* file in the cache directory:

* ``valid``: byte ranges whose current contents are in the spool (written, or uploaded
  and kept);
* ``modified``: ranges changed since the base (a subset of ``valid``); parts of an upload
  that touch none of them can be copied on the server instead of re-sent;
* ``base_limit``: base bytes count only below it (a truncate cuts the base for good:
  extending the file again shows zeros, not the old bytes);
* everything else up to ``size`` reads as zeros.

Memory stays bounded whatever the file size: bytes live in the spool, never in RAM.

Crash safety (nothing acknowledged is lost after ``kill -9``)
    Each dirty file has a directory ``<cache>/dirty/<id>/`` holding ``data`` (the spool),
    ``state.json`` (key, base etag and size, expected store state, POSIX metadata, the
    ``valid`` ranges and size at the time it was written, and the name of the current log)
    and ``log.N``: one fixed-size record per write or truncate, appended before the write
    is acknowledged.  Both are written with plain ``write(2)``: the kernel keeps them if the
    process dies.  ``state.json`` is replaced atomically (write + rename) and starts a new
    log, so a state and its log always belong together.  The next mount replays the log
    onto the state and finishes the upload.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from storefs.backends.base import ETag, Metadata
from storefs.cache.extents import Extents
from storefs.cache.fetch import ReadAhead, VersionReader
from storefs.errors import NoSpace, StorefsError

_RECORD = struct.Struct("<BQQ")
_WRITE = 1
_TRUNCATE = 2
STATE = "state.json"
DATA = "data"
#: emptied journal directories kept for the next ``create`` (see ``DirtyFile.spares``)
SPARES_KEPT = 32


@dataclass(frozen=True)
class Expect:
    """What this mount believes the store holds at the key: an upload is conditional on it,
    so a change made meanwhile by another client is detected, not overwritten."""

    #: the etag the object must still have (None: see ``absent``)
    etag: ETag | None = None
    #: the key must not exist
    absent: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"etag": self.etag, "absent": self.absent}

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> Expect:
        raw = raw or {}
        etag = raw.get("etag")
        return cls(ETag(etag) if etag else None, bool(raw.get("absent")))


#: no condition: stores without conditional writes, where the last writer wins
UNCONDITIONAL = Expect()


def _full_write(fd: int, data: bytes | memoryview, offset: int | None = None) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[n:]
        if offset is not None:
            offset += n


class DirtyFile:
    """Local changes of one file (see the module docstring).

    Mutations (``write``, ``truncate``) are synchronous and must be serialised by the
    caller (the filesystem holds ``lock`` around them and around uploads); reads may run
    concurrently with each other.
    """

    def __init__(self, directory: Path, key: str, size: int, *,
                 base: VersionReader | None, base_etag: ETag | None, expect: Expect,
                 metadata: Metadata, content_type: str | None, journal: bool = True,
                 spares: list[str] | None = None) -> None:
        self.dir = directory
        self.id = directory.name
        self.key = key
        self.size = size
        self.base = base
        self.base_etag = base_etag
        self.base_limit = base.size if base is not None else 0
        self.valid = Extents()
        self.modified = Extents()
        self.expect = expect
        self.metadata: dict[str, str] = dict(metadata)
        self.content_type = content_type
        self.journal = journal
        #: bumped by every change; an upload of generation g makes the file clean if no
        #: change came after
        self.generation = 1
        self.uploaded_generation = 0
        #: detached from any name (unlinked while open): never uploaded
        self.orphan = False
        self.last_error: StorefsError | None = None
        self.next_attempt = 0.0
        self.attempts = 0
        self.lock = trio.Lock()
        #: write-back's state of a multipart upload streamed while the file is written
        self.stream: Any = None
        #: an upload of this file is running
        self.uploading = False
        self._log_seq = 0
        self._log_fd = -1
        #: an upload the journal does not show yet (``uploaded(record=False)``)
        self._unrecorded = False
        #: where ``discard`` leaves the emptied directory, with its emptied files, for the
        #: next file (None: removed).  A new directory costs ext4 a block each time and a
        #: new file an inode: a small file's journal cycle took 170 us with mkdir + rmdir,
        #: 90 us renaming a kept one; its three file creations cost 0.3-0.8 ms each on this
        #: disk, against tens of us for reopening kept ones.  A mount that starts removes
        #: any left over (``free-*``: ``WriteBack.recover``)
        self.spares = spares
        # (a kept directory's spool is empty already; O_TRUNC keeps that a certainty)
        self.fd = os.open(directory / DATA, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                          0o600)
        if journal:
            self.save_state()

    # -- creation and recovery --------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, key: str, size: int, **kwargs: Any) -> DirtyFile:
        directory = root / f"{int(time.time())}-{secrets.token_hex(6)}"
        spares: list[str] = kwargs.get("spares") or []
        while spares:
            with contextlib.suppress(OSError):  # removed meanwhile: the next one
                os.rename(spares.pop(), directory)
                break
        else:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls(directory, key, size, **kwargs)

    @staticmethod
    def never_created(directory: Path) -> bool:
        """Whether a journal whose state does not parse is one whose creation never
        finished: the first state is written in place (``save_state``), later ones
        replace it whole, so only a first one can be cut short, and only a first one
        goes with ``log.1`` alone (a kept directory taken for a new file has an empty
        state until that first one is written).  Both that log and the spool must be empty: a file
        whose creation was acknowledged may have writes in them, and a state damaged
        some other way must not take those with it."""
        logs = [p for p in directory.iterdir() if p.name.startswith("log.")]
        if [p.name for p in logs] != ["log.1"] or logs[0].stat().st_size:
            return False
        data = directory / DATA
        return not data.exists() or data.stat().st_size == 0

    @classmethod
    def recover(cls, directory: Path) -> DirtyFile:
        """Rebuild a dirty file from its state and log after a crash (no base reader yet:
        the caller attaches one for ``base_etag``)."""
        state = json.loads((directory / STATE).read_text())
        self = cls.__new__(cls)
        self.dir = directory
        self.id = directory.name
        self.key = state["key"]
        self.size = state["size"]
        self.base = None
        base_etag = state.get("base_etag")
        self.base_etag = ETag(base_etag) if base_etag else None
        self.base_limit = state["base_limit"]
        self.valid = Extents([(a, b) for a, b in state["valid"]])
        self.modified = self.valid.copy()
        self.expect = Expect.from_json(state.get("expect"))
        self.metadata = dict(state.get("metadata") or {})
        self.content_type = state.get("content_type")
        self.journal = True
        self.generation = 1
        self.uploaded_generation = 0
        self.orphan = False
        self.last_error = None
        self.next_attempt = 0.0
        self.attempts = 0
        self.lock = trio.Lock()
        self.stream = None
        self.uploading = False
        self._log_seq = state["log"]
        self._log_fd = -1
        self._unrecorded = False
        self.spares = None
        self.fd = os.open(directory / DATA, os.O_RDWR | os.O_CLOEXEC)
        log_path = directory / f"log.{self._log_seq}"
        raw = log_path.read_bytes() if log_path.exists() else b""
        usable = len(raw) - len(raw) % _RECORD.size  # a torn last record was never acked
        if usable or state.get("pending", True):
            for op, a, b in _RECORD.iter_unpack(raw[:usable]):
                if op == _WRITE:
                    self.valid.add(a, a + b)
                    self.size = max(self.size, a + b)
                elif op == _TRUNCATE:
                    self._apply_truncate(a)
        else:
            # uploaded and unchanged since: nothing to finish
            self.uploaded_generation = self.generation
        self.modified = self.valid.copy()
        self.save_state()
        return self

    # -- journal -----------------------------------------------------------------------------

    def save_state(self) -> None:
        """Write ``state.json`` atomically and start a new, empty log."""
        if not self.journal:
            return
        self._unrecorded = False
        self._log_seq += 1
        # plain strings and os calls: this runs for every file a close uploads
        d = str(self.dir)
        fd = os.open(f"{d}/log.{self._log_seq}",
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
        state = {
            "version": 1,
            "key": self.key,
            "size": self.size,
            "base_etag": self.base_etag if self.base is not None or self.base_etag else None,
            "base_limit": self.base_limit,
            "valid": [[a, b] for a, b in self.valid],
            "expect": self.expect.to_json(),
            "metadata": self.metadata,
            "content_type": self.content_type,
            "log": self._log_seq,
            "pending": not self.clean,
            "saved": time.time(),
        }
        # the first state of a new file replaces none: it is written in place (a kill
        # mid-write leaves it cut short with nothing acknowledged: ``never_created``; a
        # failed write removes it and the create fails); later ones replace it whole
        first = self._log_seq == 1
        target = f"{d}/{STATE}"
        path = target if first else f"{target}.tmp"
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _full_write(out, json.dumps(state).encode())
        except BaseException:
            if first:
                with contextlib.suppress(OSError):
                    os.unlink(target)
            raise
        finally:
            os.close(out)
        if not first:
            os.replace(path, target)
        old_fd, old_seq = self._log_fd, self._log_seq - 1
        self._log_fd = fd
        if old_fd >= 0:
            os.close(old_fd)
        if old_seq > 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{d}/log.{old_seq}")

    def _log(self, op: int, a: int, b: int) -> None:
        if self._unrecorded:
            # the change applies to the uploaded version: the journal must say so first
            self.save_state()
        if self.journal and self._log_fd >= 0:
            _full_write(self._log_fd, _RECORD.pack(op, a, b))

    def stop_journal(self) -> None:
        """Forget the journal (the file was unlinked): a crash must not resurrect it."""
        self.journal = False
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1
        for p in self.dir.iterdir():
            if p.name != DATA:
                p.unlink(missing_ok=True)

    # -- changes -----------------------------------------------------------------------------

    @property
    def clean(self) -> bool:
        return self.uploaded_generation == self.generation

    def unshare(self) -> None:
        """The spool was hard-linked into a local store as the file itself (file://): give
        this dirty file a copy of its own before changing it (copied in the kernel)."""
        if os.fstat(self.fd).st_nlink <= 1:
            return
        tmp = self.dir / (DATA + ".new")
        new = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(self.fd).st_size
            offset = 0
            while offset < size:
                n = os.copy_file_range(self.fd, new, size - offset, offset, offset)
                if n == 0:
                    break
                offset += n
            os.replace(tmp, self.dir / DATA)
        except OSError as exc:
            os.close(new)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(f"{self.key}: the cache disk is full") from exc
            raise
        os.close(self.fd)
        self.fd = new

    @property
    def spool_path(self) -> str:
        return str(self.dir / DATA)

    def write(self, offset: int, data: bytes) -> None:
        """Put ``data`` at ``offset``; returns only when it is safe from a crash."""
        self.unshare()
        self._spool_write(self.fd, offset, data)
        self._journal_write(offset, len(data))
        self._mark(offset, len(data))

    async def write_in_thread(self, offset: int, data: bytes) -> None:
        """``write``, with the copy into the spool in a worker thread (the trio thread goes
        on with uploads meanwhile).  Only the ``pwrite`` runs there, on a descriptor of its
        own (a discard meanwhile closes ``self.fd``, never one in use); the journal record
        and the bookkeeping follow on the trio thread, so a ``save_state`` in between sees
        either none of this write or all of it."""
        self.unshare()
        fd = os.dup(self.fd)
        try:
            await trio.to_thread.run_sync(self._spool_write, fd, offset, data)
        finally:
            os.close(fd)
        self._journal_write(offset, len(data))
        self._mark(offset, len(data))

    def _spool_write(self, fd: int, offset: int, data: bytes) -> None:
        try:
            _full_write(fd, data, offset)
        except OSError as exc:
            self._refuse_if_full(exc)
            raise

    def _journal_write(self, offset: int, length: int) -> None:
        try:
            self._log(_WRITE, offset, length)
        except OSError as exc:
            self._refuse_if_full(exc)
            raise

    def _refuse_if_full(self, exc: OSError) -> None:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(f"{self.key}: the cache disk is full") from exc

    def _mark(self, offset: int, length: int) -> None:
        end = offset + length
        self.valid.add(offset, end)
        self.modified.add(offset, end)
        self.size = max(self.size, end)
        self.generation += 1

    def _apply_truncate(self, size: int) -> None:
        self.valid.truncate(size)
        self.modified.truncate(size)
        self.base_limit = min(self.base_limit, size)
        if size < self.size:
            os.ftruncate(self.fd, size)
        self.size = size

    def truncate(self, size: int) -> None:
        self.unshare()
        self._log(_TRUNCATE, size, 0)
        old = self.size
        self._apply_truncate(size)
        if size > old:
            # the new bytes are zeros that differ from whatever the base held there
            self.modified.add(old, size)
            self.valid.add(old, size)
        self.generation += 1

    def fill_from(self, base_fd: int) -> None:
        """Copy into the spool every base byte it lacks (local stores, before the spool is
        handed to the store whole).  Runs in a worker thread; the caller holds ``lock``."""
        for a, b, inside in list(self.valid.pieces(0, min(self.size, self.base_limit))):
            if inside:
                continue
            pos = a
            while pos < b:
                data = os.pread(base_fd, min(b - pos, 8 << 20), pos)
                if not data:
                    break
                _full_write(self.fd, data, pos)
                self._log(_WRITE, pos, len(data))
                self.valid.add(pos, pos + len(data))
                pos += len(data)

    def set_metadata(self, metadata: Metadata, content_type: str | None = None) -> None:
        self.metadata = dict(metadata)
        if content_type is not None:
            self.content_type = content_type
        self.generation += 1
        self.save_state()

    def uploaded(self, generation: int, base: VersionReader, etag: ETag, *,
                 record: bool = True) -> None:
        """The store now holds generation ``generation`` as version ``etag``.

        ``record`` False leaves the journal saying the upload is pending until the next
        change or ``discard`` (a close, or a background upload of a released file, is
        followed by the discard: the state would be written only to be removed).  A crash
        in between makes the next mount send the same version again, which write-back
        recognises in the store (same size, MD5 and metadata) or, on file://, as the same
        inode; write-back records at once where it could not."""
        if self.base is not None and self.base is not base:
            self.base.close()
        self.base = base
        self.base_etag = etag
        self.base_limit = self.size
        self.expect = Expect(etag) if self.expect != UNCONDITIONAL else UNCONDITIONAL
        self.uploaded_generation = generation
        if generation == self.generation:
            self.modified.clear()
        self.last_error = None
        self.attempts = 0
        if record:
            self.save_state()
        else:
            self._unrecorded = True

    # -- reads -------------------------------------------------------------------------------

    def spool_read(self, start: int, end: int) -> bytes:
        data = os.pread(self.fd, end - start, start)
        if len(data) < end - start:
            # a sparse tail that was never written reads as zeros
            data += bytes(end - start - len(data))
        return data

    async def read(self, start: int, end: int, ahead: ReadAhead | None = None) -> bytes:
        """Current bytes ``[start, end)``, merged from spool, base and zeros."""
        end = min(end, self.size)
        if end <= start:
            return b""
        if self.valid.contains(start, end):
            return self.spool_read(start, end)
        out = bytearray()
        for a, b, inside in self.valid.pieces(start, end):
            if inside:
                out += self.spool_read(a, b)
                continue
            if self.base is not None and a < self.base_limit:
                bb = min(b, self.base_limit)
                out += await self.base.read(a, bb, ahead)
                a = bb
            if a < b:
                out += bytes(b - a)
        return bytes(out)

    def copyable(self, start: int, end: int) -> bool:
        """Whether ``[start, end)`` is unchanged base data (a server-side copy candidate)."""
        return (self.base is not None and end <= self.base_limit
                and not self.modified.overlaps(start, end))

    # -- end ---------------------------------------------------------------------------------

    def discard(self) -> None:
        """Remove the spool and journal (after upload, or when the file is gone)."""
        if self.base is not None:
            self.base.close()
            self.base = None
        d = str(self.dir)
        if self.spares is not None and len(self.spares) < SPARES_KEPT:
            spare = f"{self.dir.parent}/free-{secrets.token_hex(6)}"
            try:
                # first of all: a "free-" directory is nothing to recover, whatever is in it
                os.rename(d, spare)
            except OSError:
                pass
            else:
                if self._empty_for_reuse(spare):
                    self.spares.append(spare)
                else:
                    shutil.rmtree(spare, ignore_errors=True)
                return
        self._close_files()
        # the names it holds are known: four calls, where rmtree lists the directory first
        for name in (DATA, STATE, f"log.{self._log_seq}"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{d}/{name}")
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            shutil.rmtree(d, ignore_errors=True)  # something else in it (a torn save)

    def _empty_for_reuse(self, spare: str) -> bool:
        """Empty the files of a journal directory renamed to ``spare`` but keep them: a new
        file costs ext4 an inode (0.3-0.8 ms here, three per small file), where truncating
        an empty-to-be one costs a tenth of that.  The spool goes when the store holds it
        (file:// links it in as the file itself).  False: something else is in there."""
        try:
            if self.fd >= 0:
                if os.fstat(self.fd).st_nlink > 1:
                    os.unlink(f"{spare}/{DATA}")
                else:
                    os.ftruncate(self.fd, 0)
            if self._log_fd >= 0:
                os.ftruncate(self._log_fd, 0)
                if self._log_seq != 1:
                    os.rename(f"{spare}/log.{self._log_seq}", f"{spare}/log.1")
            with contextlib.suppress(FileNotFoundError):
                os.truncate(f"{spare}/{STATE}", 0)
            return set(os.listdir(spare)) <= {DATA, STATE, "log.1"}
        except OSError:
            return False
        finally:
            self._close_files()

    def _close_files(self) -> None:
        for fd in (self.fd, self._log_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.fd = self._log_fd = -1

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "pending": not self.clean,
                "modified_bytes": self.modified.total(),
                "error": str(self.last_error) if self.last_error else None,
                "attempts": self.attempts, "spool": str(self.dir)}
