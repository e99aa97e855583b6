"""Write-back: getting dirty files into the store.

Uploads happen on ``flush`` (close), ``fsync`` and ``release``, and in the background for
files whose upload failed or that a previous mount left behind; every dirty file is in
the crash-safe journal of ``storefs.cache.dirty`` until the store has it.

Small files go up with one ``put``.  Larger ones go up in parts: while a new file is
being written sequentially, every part that is complete is sent at once in the background
("streaming"), so closing a 1 GiB file only waits for the last part and the completion,
and memory holds at most ``parallel`` parts.  Parts of an existing object that were not
touched are copied on the server where the store can (``Capabilities.part_copy``), so an
append to a big object sends only the new bytes.  A part that is written again after it
was sent is sent again (or, on stores whose parts form one sequential stream, the stream
is restarted at the next upload).

Every upload is conditional on what this mount last saw at the key (``Expect``).  When
another client changed the object meanwhile, the local version is saved next to it as
``NAME.storefs-conflict-<time>`` and the caller gets ``PreconditionFailed`` (ESTALE):
neither version is lost.

Lock order: ``DirtyFile.lock`` (held by uploads and by the filesystem's writes) is taken
before ``WriteBack._slots``; streaming tasks take only the slots.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from storefs.backends.base import Backend, ETag, ObjectMeta, Upload
from storefs.backends.retrying import BACKGROUND_DEADLINE, retry_deadline
from storefs.cache.dirty import UNCONDITIONAL, DirtyFile, Expect
from storefs.cache.fetch import Fetcher, LocalVersion, RemoteVersion, VersionReader
from storefs.errors import (
    AlreadyExists,
    IntegrityError,
    NotFound,
    PreconditionFailed,
    StorefsError,
    TransientError,
    UploadInterrupted,
)
from storefs.parallel import fan_out

log = logging.getLogger(__name__)

#: delays between background attempts of a failing upload (seconds), the last repeats
RETRY_DELAYS = (1.0, 5.0, 15.0, 60.0, 300.0)
#: times one upload at close is sent from the start when its stream breaks part-way
STREAM_ATTEMPTS = 3
#: a refused conditional upload is compared with what the store holds (by MD5) for files
#: up to this size: the local bytes are hashed again, which for bigger files costs more
#: than a conflict copy saves
LANDED_CHECK_MAX = 256 * 1024 * 1024
_HASH_READ = 1024 * 1024


def md5_digest(value: str | None) -> bytes | None:
    """A store's MD5 as bytes, from the hex (S3, Swift, mem) or base64 (GCS, Manta) the
    backend reports; None when there is none or it is no MD5."""
    if not value:
        return None
    try:
        raw = bytes.fromhex(value) if len(value) == 32 else base64.b64decode(value,
                                                                             validate=True)
    except (ValueError, binascii.Error):
        return None
    return raw if len(raw) == 16 else None


@dataclass
class _PartToken:
    stale: bool = False


@dataclass
class StreamState:
    """A multipart upload sent part by part while the file is being written."""

    part_size: int
    upload: Upload | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    #: part number -> length sent (and still current)
    done: dict[int, int] = field(default_factory=dict)
    inflight: dict[int, _PartToken] = field(default_factory=dict)
    idle: trio.Event = field(default_factory=trio.Event)
    aborted: bool = False
    #: an upload at flush took this stream over: no more parts are spawned for it
    closing: bool = False
    #: a part of a one-stream upload failed: nothing more is streamed, the upload at
    #: flush starts over (a stream cannot send one part again)
    failed: bool = False
    begin_lock: trio.Lock = field(default_factory=trio.Lock)

    def __post_init__(self) -> None:
        self.idle.set()


class WriteBack:
    """Uploads of dirty files (see the module docstring)."""

    def __init__(self, backend: Backend, fetcher: Fetcher, root: Path, *,
                 parallel: int = 4, stream: bool = True) -> None:
        self.backend = backend
        self.caps = backend.capabilities
        self.fetcher = fetcher
        self.root = root
        self.parallel = parallel
        self.stream_enabled = stream
        self._slots = trio.CapacityLimiter(parallel)
        self._nursery: trio.Nursery | None = None
        #: dirty files that must be uploaded without anyone waiting (released, recovered)
        self.background: dict[str, DirtyFile] = {}
        self._wake = trio.Event()
        #: called with (dirty file, new meta) after every successful upload
        self.on_uploaded: Callable[[DirtyFile, ObjectMeta], None] = lambda df, meta: None
        #: called with (dirty file, conflict key) when a conflict copy was saved
        self.on_conflict: Callable[[DirtyFile, str], None] = lambda df, key: None
        self.uploads = 0
        self.uploaded_bytes = 0
        self.failures = 0
        self.conflicts = 0
        self.streamed_parts = 0
        self.copied_parts = 0
        #: emptied journal directories for new dirty files (``DirtyFile.spares``)
        self.spare_dirs: list[str] = []
        root.mkdir(mode=0o700, parents=True, exist_ok=True)

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        nursery.start_soon(self._background_loop)

    def recover(self) -> list[DirtyFile]:
        """Dirty files a previous mount left (killed, or stopped before they were up)."""
        found: list[DirtyFile] = []
        for d in sorted(self.root.iterdir()):
            if d.name.startswith("free-") or not (d / "state.json").exists():
                # a kept empty directory, a journal never completed (crash during
                # creation) or an orphan's spool
                _rmtree(d)
                continue
            try:
                df = DirtyFile.recover(d)
            except (OSError, ValueError, KeyError) as exc:
                if isinstance(exc, ValueError) and DirtyFile.never_created(d):
                    _rmtree(d)  # killed while writing its first state: nothing was acked
                    continue
                log.error("cannot recover pending upload in %s: %s (left in place)", d, exc)
                continue
            df.spares = self.spare_dirs
            if df.clean:
                df.discard()
                continue
            found.append(df)
        return found

    def base_reader(self, key: str, meta: ObjectMeta) -> VersionReader:
        """A reader of version ``meta`` of ``key``."""
        if self.caps.local:
            path = self.backend.local_path(key)
            assert path is not None
            return LocalVersion(path, meta.size)
        return RemoteVersion(self.fetcher, key, meta.etag, meta.size)

    def create(self, key: str, size: int, *, base: VersionReader | None,
               base_etag: ETag | None, expect: Expect, metadata: dict[str, str],
               content_type: str | None) -> DirtyFile:
        if not self.caps.conditional_put:
            expect = Expect()
        return DirtyFile.create(self.root, key, size, base=base, base_etag=base_etag,
                                expect=expect, metadata=metadata, content_type=content_type,
                                spares=self.spare_dirs)

    # -- streaming ----------------------------------------------------------------------------

    def part_size_for(self, size: int) -> int:
        part = max(self.caps.part_size, self.caps.min_part_size)
        while math.ceil(size / part) > self.caps.max_parts and part < self.caps.max_part_size:
            part *= 2
        return min(part, self.caps.max_part_size)

    def after_write(self, df: DirtyFile, start: int, end: int) -> None:
        """Called after each write: invalidates sent parts it touched and sends parts that
        became complete."""
        st: StreamState | None = df.stream
        if st is not None:
            self._invalidate(df, st, start, end)
        if not self.stream_enabled or self._nursery is None or df.orphan or df.uploading:
            return
        if self.caps.local:
            return  # the whole spool is copied in the kernel at close: nothing to gain
        if st is not None and (st.closing or st.failed):
            return
        if df.base is not None and df.base_limit > 0:
            return  # edits of an existing object are uploaded at flush (with part copies)
        if df.size <= self.caps.multipart_threshold:
            return
        if st is None or st.aborted:
            st = df.stream = StreamState(self.caps.part_size)
        ready = df.valid.prefix_end() // st.part_size
        if ready * st.part_size >= df.size:
            ready -= 1  # never stream what may be the last part: it is sent at flush
        if self.caps.sequential_parts:
            n = len(st.done) + 1
            if not st.inflight and n <= ready and n not in st.done:
                self._spawn(df, st, n)
            return
        budget = 2 * self.parallel - len(st.inflight)
        for n in range(1, ready + 1):
            if budget <= 0:
                break
            if n not in st.done and n not in st.inflight:
                self._spawn(df, st, n)
                budget -= 1

    def _invalidate(self, df: DirtyFile, st: StreamState, start: int, end: int) -> None:
        if end <= start or st.failed:
            return  # nothing written (the nudge after a part finished): every part holds
        first = start // st.part_size + 1
        last = max(first, (end - 1) // st.part_size + 1)
        touched = [n for n in range(first, last + 1) if n in st.done or n in st.inflight]
        if not touched:
            return
        if self.caps.sequential_parts:
            self._abort_stream(df)
            return
        for n in touched:
            st.done.pop(n, None)
            token = st.inflight.get(n)
            if token is not None:
                token.stale = True

    def drop_stream(self, df: DirtyFile) -> None:
        """Abort the upload streamed while ``df`` was written (truncated, or detached from
        its name): its request must not stay open, nor land."""
        if df.stream is not None:
            self._abort_stream(df)

    def _abort_stream(self, df: DirtyFile) -> None:
        st: StreamState | None = df.stream
        df.stream = None
        if st is not None:
            self._stop_stream(st)

    def _stop_stream(self, st: StreamState) -> None:
        """No more parts for ``st``; its upload is aborted once the parts in flight end."""
        st.aborted = True
        if st.upload is not None and self._nursery is not None:
            self._nursery.start_soon(self._abort_upload, st)

    async def _abort_upload(self, st: StreamState) -> None:
        await st.idle.wait()
        if st.upload is not None:
            with contextlib.suppress(Exception):
                await st.upload.abort()

    def _spawn(self, df: DirtyFile, st: StreamState, n: int) -> None:
        assert self._nursery is not None
        token = _PartToken()
        if not st.inflight:
            st.idle = trio.Event()  # a waiter always waits on the event that gets set
        st.inflight[n] = token
        self._nursery.start_soon(self._stream_part, df, st, n, token)

    async def _ensure_upload(self, df: DirtyFile, st: StreamState) -> Upload:
        async with st.begin_lock:
            if st.upload is None:
                st.metadata = dict(df.metadata)
                st.upload = await self.backend.begin_upload(
                    df.key, st.metadata, part_size=st.part_size,
                    content_type=df.content_type, **_conditions(df.expect))
            return st.upload

    async def _stream_part(self, df: DirtyFile, st: StreamState, n: int,
                           token: _PartToken) -> None:
        try:
            async with self._slots:
                if st.aborted or token.stale:
                    return
                upload = await self._ensure_upload(df, st)
                start = (n - 1) * st.part_size
                data = await trio.to_thread.run_sync(df.spool_read, start, start + st.part_size)
                if token.stale or st.aborted:
                    return
                with retry_deadline(BACKGROUND_DEADLINE):
                    await upload.write_part(n, data)
                if not token.stale:
                    st.done[n] = len(data)
                    self.streamed_parts += 1
        except Exception as exc:
            # the part is sent again by the upload at flush, which reports errors
            log.info("%s: streaming part %d failed: %s", df.key, n, exc)
            if self.caps.sequential_parts and df.stream is st:
                st.failed = True  # kept as df.stream: the file streams no more until flush
                self._stop_stream(st)
        finally:
            if st.inflight.get(n) is token:
                del st.inflight[n]
            if not st.inflight:
                st.idle.set()
            if df.stream is st and not st.closing:
                # keep the stream going as parts finish
                self.after_write(df, 0, 0)

    # -- uploads ------------------------------------------------------------------------------

    async def upload(self, df: DirtyFile, *, durable: bool = True) -> ObjectMeta | None:
        """Upload ``df`` now unless it is clean; returns the new meta (None if clean).
        The caller holds ``df.lock``.  Raises the store's error; on a conflict the local
        version is saved under a conflict name first."""
        if df.clean or df.orphan:
            return None
        generation = df.generation
        df.uploading = True
        try:
            meta = await self._send(df, df.key, df.expect, durable=durable)
        except (PreconditionFailed, AlreadyExists) as exc:
            landed = await self._landed(df)
            if landed is None:
                self.conflicts += 1
                raise await self._conflict(df, exc) from exc
            meta = landed
        except StorefsError as exc:
            self.failures += 1
            df.last_error = exc
            df.attempts += 1
            if isinstance(exc, IntegrityError) and exc.stored_etag \
                    and df.expect != UNCONDITIONAL:
                # our own damaged upload is at the name now: the retry replaces it
                df.expect = Expect(ETag(exc.stored_etag))
                df.save_state()
            raise
        finally:
            df.uploading = False
        # an upload that need only be visible (a close's, a released file's in the
        # background) of a file unchanged meanwhile is recorded lazily: the discard that
        # follows removes the journal anyway
        lazy = not durable and generation == df.generation and self._recognisable(df, meta)
        df.uploaded(generation, self.base_reader(df.key, meta), meta.etag, record=not lazy)
        self.uploads += 1
        self.uploaded_bytes += meta.size
        if df.clean:
            self.background.pop(df.id, None)
        elif df.id in self.background:
            # changed while it was going up (a chmod after close): once more, now
            df.next_attempt = 0.0
            self._wake.set()
        self.on_uploaded(df, meta)
        return meta

    async def _send(self, df: DirtyFile, key: str, expect: Expect, *,
                    durable: bool = True) -> ObjectMeta:
        size = df.size
        if self.caps.local:
            base = df.base
            if isinstance(base, LocalVersion) and df.base_limit > 0:
                await trio.to_thread.run_sync(df.fill_from, base.fd)
            # a spool of exactly the file's size can become the file (hard link, no copy)
            exact = os.fstat(df.fd).st_size == size and key == df.key
            return await self.backend.put_file(key, df.fd, size, df.metadata,
                                               content_type=df.content_type, durable=durable,
                                               link_from=df.spool_path if exact else None,
                                               **_conditions(expect))
        st: StreamState | None = df.stream
        streamed = st is not None and st.upload is not None and not st.aborted
        if size <= self.caps.multipart_threshold and not streamed:
            if st is not None:
                self._abort_stream(df)
            data = await df.read(0, size)
            return await self.backend.put(key, data, df.metadata, content_type=df.content_type,
                                          **_conditions(expect))
        return await self._multipart(df, key, expect, size)

    async def _multipart(self, df: DirtyFile, key: str, expect: Expect,
                         size: int) -> ObjectMeta:
        attempt = 0
        while True:
            try:
                return await self._multipart_once(df, key, expect, size)
            except UploadInterrupted as exc:
                # a one-stream upload broke part-way: it starts over from the first byte
                attempt += 1
                if attempt >= STREAM_ATTEMPTS:
                    raise
                log.info("%s: %s; sending it again (attempt %d)", key, exc, attempt + 1)

    async def _multipart_once(self, df: DirtyFile, key: str, expect: Expect,
                              size: int) -> ObjectMeta:
        st: StreamState | None = df.stream
        if st is not None:
            st.closing = True
            await st.idle.wait()
            usable = (not st.aborted and st.upload is not None and key == df.key
                      and math.ceil(size / st.part_size) <= self.caps.max_parts)
            if not usable:
                self._abort_stream(df)
                st = None
        if st is None:
            st = StreamState(self.part_size_for(size))
            if key == df.key:
                df.stream = st
        upload = await self._ensure_upload_for(df, st, key, expect, size)
        part = st.part_size
        count = max(1, math.ceil(size / part))
        df.stream = None  # from here on, this upload belongs to this call
        try:
            if self.caps.sequential_parts:
                for n in range(1, count + 1):
                    await self._send_part(df, st, upload, n, part, size, key)
            else:
                async with fan_out() as nursery:
                    for n in range(1, count + 1):
                        nursery.start_soon(self._send_part, df, st, upload, n, part, size, key)
            meta = await upload.complete()
        except BaseException:
            with contextlib.suppress(Exception), trio.CancelScope(shield=True):
                await upload.abort()
            raise
        if st.metadata != df.metadata:
            # chmod/utime/chown after the upload began (cp -a does them before close)
            meta = await self.backend.set_metadata(key, df.metadata, if_match=meta.etag)
        return meta

    async def _ensure_upload_for(self, df: DirtyFile, st: StreamState, key: str,
                                 expect: Expect, size: int) -> Upload:
        if st.upload is not None:
            return st.upload
        st.metadata = dict(df.metadata)
        st.upload = await self.backend.begin_upload(
            key, st.metadata, part_size=st.part_size, content_type=df.content_type,
            size=size, **_conditions(expect))
        return st.upload

    async def _send_part(self, df: DirtyFile, st: StreamState, upload: Upload, n: int,
                         part: int, size: int, key: str) -> None:
        start = (n - 1) * part
        end = min(size, start + part)
        if st.done.get(n) == end - start:
            return
        async with self._slots:
            if (self.caps.part_copy and df.copyable(start, end) and df.base_etag
                    and end - start >= self.caps.min_part_size):
                await upload.copy_part(n, df.key, start, end, if_match=df.base_etag)
                self.copied_parts += 1
            else:
                data = await df.read(start, end)
                await upload.write_part(n, data)
        st.done[n] = end - start

    def _recognisable(self, df: DirtyFile, meta: ObjectMeta) -> bool:
        """Whether the next mount could tell that this upload landed if a crash came
        before the journal recorded it: by its MD5 (``_landed``), or on file:// because
        the spool became the store's file (a hard link)."""
        if df.size <= LANDED_CHECK_MAX and md5_digest(meta.checksums.get("md5")) is not None:
            return True
        return self.caps.local and os.fstat(df.fd).st_nlink > 1

    async def _landed(self, df: DirtyFile) -> ObjectMeta | None:
        """What the store holds at ``df.key`` when it is exactly this version (same size,
        MD5 and metadata), else None.  A refused conditional upload is then no conflict:
        an earlier attempt landed and its reply was lost (the retry found the name
        taken), or a crash came after the upload and before the journal said so."""
        if df.size > LANDED_CHECK_MAX:
            return None
        try:
            head = await self.backend.head(df.key)
            theirs = md5_digest(head.checksums.get("md5"))
            if theirs is None or head.size != df.size or head.is_dir:
                return None
            if head.metadata_complete and any(head.metadata.get(k) != v
                                              for k, v in df.metadata.items()):
                return None
            digest = hashlib.md5(usedforsecurity=False)
            pos = 0
            while pos < df.size:
                chunk = await df.read(pos, min(pos + _HASH_READ, df.size))
                if not chunk:
                    return None
                # off the trio thread: hundreds of MiB would stall every FUSE request
                await trio.to_thread.run_sync(digest.update, chunk)
                pos += len(chunk)
        except StorefsError:
            return None  # cannot tell: a conflict, as without the check
        if digest.digest() != theirs:
            return None
        log.info("%s: the store already holds this version (an earlier attempt landed)",
                 df.key)
        return head

    async def _conflict(self, df: DirtyFile, exc: StorefsError) -> StorefsError:
        """Save the local version beside the one another client wrote; return the error
        to report."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        conflict_key = f"{df.key}.storefs-conflict-{stamp}"
        try:
            with retry_deadline(BACKGROUND_DEADLINE):
                await self._send(df, conflict_key, Expect(absent=True))
        except StorefsError as err:
            df.last_error = err
            log.error("%s: changed by another client, and saving this version as %s "
                      "failed: %s; it stays in %s", df.key, conflict_key, err, df.dir)
            return PreconditionFailed(
                f"{df.key}: changed by another client; your version is kept in {df.dir}")
        log.warning("%s: changed by another client (%s); this mount's version was saved "
                    "as %s", df.key, exc, conflict_key)
        self.background.pop(df.id, None)
        self.on_conflict(df, conflict_key)
        return PreconditionFailed(
            f"{df.key}: changed by another client; your version was saved as {conflict_key}")

    # -- background ---------------------------------------------------------------------------

    def schedule(self, df: DirtyFile) -> None:
        """Upload ``df`` in the background (it was released dirty, or recovered)."""
        if df.clean or df.orphan:
            return
        self.background[df.id] = df
        self._wake.set()

    def unschedule(self, df: DirtyFile) -> None:
        self.background.pop(df.id, None)

    async def _background_loop(self) -> None:
        """Uploads of scheduled files, ``parallel`` at once (a copy of many small files with
        ``sync_close=false`` keeps that many PUTs in flight)."""
        slots = trio.CapacityLimiter(self.parallel)
        running: set[str] = set()
        async with trio.open_nursery() as nursery:
            while True:
                self._wake = trio.Event()
                now = trio.current_time()
                due = [df for df in self.background.values()
                       if df.next_attempt <= now and df.id not in running]
                for df in due:
                    token = object()
                    await slots.acquire_on_behalf_of(token)
                    running.add(df.id)
                    nursery.start_soon(self._background_one, df, slots, token, running)
                waiting = [df.next_attempt for df in self.background.values()
                           if df.id not in running]
                if waiting:
                    with trio.move_on_at(max(min(waiting), trio.current_time() + 0.05)):
                        await self._wake.wait()
                else:
                    await self._wake.wait()

    async def _background_one(self, df: DirtyFile, slots: trio.CapacityLimiter, token: object,
                              running: set[str]) -> None:
        try:
            await self._try_background(df)
        except Exception:
            # never let one file's surprise cancel the others' uploads (or the mount)
            log.exception("%s: background upload failed", df.key)
            df.next_attempt = trio.current_time() + RETRY_DELAYS[-1]
        finally:
            running.discard(df.id)
            slots.release_on_behalf_of(token)
            self._wake.set()  # a retry time to wait for, or the next file

    async def _try_background(self, df: DirtyFile) -> None:
        async with df.lock:
            if df.clean or df.orphan:
                self.background.pop(df.id, None)
                return
            try:
                with retry_deadline(BACKGROUND_DEADLINE):
                    # visible is what a released file needs, as at a close; an fsync
                    # later makes it durable (Filesystem.fsync)
                    await self.upload(df, durable=False)
            except PreconditionFailed as exc:
                log.error("%s", exc)
                self.background.pop(df.id, None)
            except NotFound as exc:
                # the parent directory is gone: nowhere to put it; keep it and say so
                df.next_attempt = trio.current_time() + RETRY_DELAYS[-1]
                log.error("%s: cannot upload (%s); kept in %s", df.key, exc, df.dir)
            except (StorefsError, OSError) as exc:
                delay = RETRY_DELAYS[min(df.attempts, len(RETRY_DELAYS)) - 1]
                df.next_attempt = trio.current_time() + delay
                log.warning("%s: upload failed (%s); retrying in %.0fs", df.key, exc, delay)

    async def drain(self, files: list[DirtyFile], deadline: float,
                    progress: Callable[[str], None] = lambda line: None) -> list[DirtyFile]:
        """Upload every file of ``files`` that is dirty, until ``deadline`` (trio time);
        returns the ones still not in the store."""
        left = [df for df in files if not df.clean and not df.orphan]
        total = sum(df.size for df in left)
        if left:
            progress(f"uploading {len(left)} pending file(s), {_human(total)}")
        failed: list[DirtyFile] = []
        with trio.move_on_at(deadline):
            for df in left:
                async with df.lock:
                    try:
                        with retry_deadline(max(1.0, deadline - trio.current_time())):
                            await self.upload(df)
                        progress(f"uploaded {df.key} ({_human(df.size)})")
                    except (StorefsError, OSError) as exc:
                        progress(f"could not upload {df.key}: {exc}")
                        failed.append(df)
        return [df for df in left if not df.clean and not df.orphan]

    def statistics(self) -> dict[str, Any]:
        return {
            "uploads": self.uploads,
            "uploaded_bytes": self.uploaded_bytes,
            "failures": self.failures,
            "conflicts": self.conflicts,
            "streamed_parts": self.streamed_parts,
            "copied_parts": self.copied_parts,
            "background": len(self.background),
        }


def _conditions(expect: Expect) -> dict[str, Any]:
    return {"if_match": expect.etag, "if_none_match": expect.absent}


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


__all__ = ["StreamState", "TransientError", "WriteBack"]
