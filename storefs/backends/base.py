"""The backend interface: async, key-oriented, version-aware.

Every store storefs mounts (mem, file, Manta, S3, GCS, Swift, HTTP) implements ``Backend``.
The filesystem core (``storefs.fs``) and the caches (``storefs.cache``) speak only this
interface; a backend module is the only place where a store's SDK or wire protocol appears.

Keys
    Keys are ``str`` paths relative to the mount's root (the backend adds its own bucket,
    container or prefix), ``/``-separated, never starting with ``/``.  ``""`` is the root.
    A key that ends in ``/`` names a directory: on flat stores (S3, GCS, Swift, mem) the
    zero-byte *marker object* that keeps an empty directory alive; on stores with real
    directories (file, Manta) the directory itself.

Directories
    ``capabilities.real_directories`` says which kind of store this is.  On flat stores a
    directory exists when its marker exists or when any key has it as a prefix.  On real-dir
    stores ``head("a/b")`` of a directory returns ``ObjectMeta(is_dir=True, key="a/b/")``,
    listings return subdirectories as ``ObjectMeta(is_dir=True)`` entries in ``objects`` (so
    their metadata comes with the listing), and ``make_dir`` / ``remove_dir`` create and
    remove them.

Errors
    Methods raise ``storefs.errors`` classes only (``NotFound``, ``PreconditionFailed``,
    ``TransientError``...), translated from the SDK through a table kept as data.  Retrying
    is not the backend's job: ``storefs.backends.retrying`` wraps every backend and retries
    ``TransientError`` with jittered backoff.

Concurrency
    All methods are trio coroutines and may be called concurrently.  Blocking SDKs run in
    ``trio.to_thread.run_sync`` under one ``CapacityLimiter`` per backend sized to the SDK's
    connection pool; async HTTP clients (httpx) run on the trio loop directly.

Memory
    No method buffers a whole object: reads are ranged (``get_range``), large writes go
    through ``begin_upload`` part by part.  ``put`` is for small objects only (the caller keeps
    it below ``capabilities.multipart_threshold``).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NewType

from storefs.errors import NameTooLong, TransientError, Unsupported

ETag = NewType("ETag", str)

#: User metadata as the store keeps it: keys lower-case ASCII with the store's prefix
#: (``x-amz-meta-``, ``m-``, ``X-Object-Meta-``...) stripped, values ASCII strings.
#: ``storefs.fs.posix_meta`` encodes POSIX attributes into it and back.
Metadata = Mapping[str, str]

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class Capabilities:
    """What a store can do, declared up front and never discovered by trial."""

    #: short scheme name, used in messages and statistics ("s3", "manta", "file", ...)
    name: str
    #: directories are real objects of the store (file, Manta), not prefixes + markers
    real_directories: bool = False
    #: ``copy`` runs on the server, without the bytes passing through us
    server_side_copy: bool = True
    #: ``rename`` is O(1) and needs no data copy (file: os.rename, Manta: SnapLink + delete)
    cheap_rename: bool = False
    #: ``set_metadata`` changes user metadata without rewriting the data
    metadata_update: bool = True
    #: ``put``/``begin_upload`` honour ``if_match`` and ``if_none_match``
    conditional_put: bool = True
    #: ``get_range`` honours ``if_match``
    conditional_get: bool = True
    #: objects below this size are written with one ``put``; above, with ``begin_upload``
    multipart_threshold: int = 8 * MiB
    #: every part but the last must be at least this large
    min_part_size: int = 5 * MiB
    max_part_size: int = 5 * GiB
    max_parts: int = 10_000
    #: the part size write-back uses while a file is being written (grown when a file
    #: would need more than ``max_parts`` parts)
    part_size: int = 8 * MiB
    #: parts must be written in order 1, 2, 3... and never rewritten (a resumable stream,
    #: e.g. GCS); otherwise parts may arrive in any order and a part may be re-sent
    sequential_parts: bool = False
    #: most bytes of user metadata (keys + values) the store keeps per object, or None
    max_metadata_size: int | None = None
    #: ``exchange`` swaps two names atomically (file: renameat2 RENAME_EXCHANGE)
    atomic_exchange: bool = False
    #: ``rename`` of a directory key (``"a/"``) moves the whole tree in one call (file://);
    #: otherwise the filesystem core moves a tree object by object
    dir_rename: bool = False
    #: ``Upload.copy_part`` copies a byte range of an existing object into a part on the
    #: server (S3 UploadPartCopy), so appends and small edits of big objects do not
    #: re-upload the bytes that did not change
    part_copy: bool = False
    max_object_size: int | None = None
    #: longest key the store accepts, in UTF-8 bytes
    max_key_length: int = 1024
    #: listings come back sorted by key (needed for stable readdir offsets across pages)
    ordered_listing: bool = True
    #: the store refuses every write
    read_only: bool = False
    #: the bytes live on this machine: reads bypass the chunk cache
    local: bool = False
    #: how many entries ``list_page`` returns at most, by default
    list_page_size: int = 1000
    #: which metadata convention this store writes (see storefs.fs.posix_meta)
    metadata_style: str = "s3fs"
    #: top-level directories are containers (Swift's ``swift:`` account mode): made and
    #: removed by ``make_dir``/``remove_dir``, and they must exist before objects go in
    containers: bool = False


@dataclass(frozen=True)
class ObjectMeta:
    """What ``head`` and listings tell about one object or directory."""

    key: str
    size: int
    etag: ETag
    #: the store's modification time (Last-Modified), seconds since the epoch
    mtime: float
    is_dir: bool = False
    content_type: str | None = None
    metadata: Metadata = field(default_factory=dict)
    #: checksums the store reports, by algorithm name ("md5", "crc32c", ...), as hex or
    #: base64 the way the store gives them (documented per backend)
    checksums: Mapping[str, str] = field(default_factory=dict)
    storage_class: str | None = None
    #: listings of some stores omit user metadata; then this is False and a ``head`` is
    #: needed before POSIX attributes are trusted
    metadata_complete: bool = True


@dataclass(frozen=True)
class StoreUsage:
    """What ``statfs`` reports, in bytes and entries."""

    total: int
    free: int
    files: int = 0
    files_free: int = 0


@dataclass(frozen=True)
class ListPage:
    """One page of a delimited listing under a prefix."""

    #: objects directly under the prefix (and, on real-dir stores, subdirectories)
    objects: list[ObjectMeta]
    #: common prefixes (``"a/b/"``) of keys below the prefix, on flat stores
    prefixes: list[str]
    #: opaque continuation token; ``None`` on the last page
    next_token: str | None = None


class Upload(abc.ABC):
    """A multipart upload in progress.

    Parts are numbered from 1.  Every part but the last is exactly the ``part_size`` given
    to ``begin_upload`` (at least ``capabilities.min_part_size``), so part ``n`` holds the
    bytes ``[(n-1)*part_size, n*part_size)`` of the object.  Unless
    ``capabilities.sequential_parts``, parts may be written concurrently and in any order
    and a part may be written again (the last write wins); ``complete`` assembles parts
    ``1..N`` in number order and fails if one is missing.
    """

    key: str

    @abc.abstractmethod
    async def write_part(self, number: int, data: bytes) -> None: ...

    async def copy_part(
        self, number: int, src: str, start: int, end: int, *, if_match: ETag | None = None
    ) -> None:
        """Make part ``number`` the bytes ``[start, end)`` of the existing object ``src``,
        copied on the server (``capabilities.part_copy``); ``if_match`` guards the source."""
        raise Unsupported("server-side part copy")

    @abc.abstractmethod
    async def complete(self) -> ObjectMeta:
        """Make the object visible; returns its new metadata (with the new etag)."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Discard the parts; idempotent, never raises NotFound."""


class Backend(abc.ABC):
    """A store behind one async interface.  See the module docstring for conventions."""

    capabilities: Capabilities

    # -- life cycle ---------------------------------------------------------------------

    async def connect(self) -> None:  # noqa: B027 - optional hook
        """Check the location and credentials before the mount goes live.

        Raises ``AuthError``, ``ConnectError``, ``NotFound`` (no such bucket / container /
        directory) or ``ConfigError`` with a one-line message naming the cause.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads."""

    def describe(self) -> str:
        """Where this backend points, for logs and ``storefs status`` (no secrets)."""
        return self.capabilities.name

    # -- reads --------------------------------------------------------------------------

    @abc.abstractmethod
    async def head(self, key: str) -> ObjectMeta:
        """Metadata of ``key``; raises ``NotFound``.  On real-dir stores a directory is
        found by its name with or without the trailing ``/``."""

    @abc.abstractmethod
    async def list_page(
        self, prefix: str, *, delimiter: str = "/", token: str | None = None, limit: int = 0
    ) -> ListPage:
        """One page of the keys that start with ``prefix`` (``""`` or ending in ``/``).

        With ``delimiter="/"`` keys further down are rolled up into ``prefixes``; with
        ``delimiter=""`` every key below the prefix is listed (recursive), on real-dir
        stores too.  ``limit`` 0 means ``capabilities.list_page_size``.  A marker object
        whose key equals ``prefix`` may appear in ``objects``; callers skip it.
        Listing a prefix with nothing below it returns an empty page, not ``NotFound``.
        """

    async def list(self, prefix: str, *, delimiter: str = "/") -> AsyncIterator[ListPage]:
        """All pages of a listing, following continuation tokens."""
        token: str | None = None
        while True:
            page = await self.list_page(prefix, delimiter=delimiter, token=token)
            yield page
            token = page.next_token
            if token is None:
                return

    @abc.abstractmethod
    async def get_range(
        self, key: str, start: int, end: int, *, if_match: ETag | None = None
    ) -> bytes:
        """Bytes ``[start, end)`` of ``key`` (fewer at the end of the object).

        Raises ``PreconditionFailed`` when ``if_match`` is given and the object's etag
        differs: the caller must never mix bytes of two versions.
        """

    # -- writes -------------------------------------------------------------------------

    @abc.abstractmethod
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
        """Write a whole (small) object.  ``if_none_match`` makes it fail with
        ``AlreadyExists`` when the key exists; ``if_match`` with ``PreconditionFailed``
        when the current etag differs.  Verifies the store received the bytes intact
        (Content-MD5 or the store's checksum) where the store allows it."""

    @abc.abstractmethod
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
        """Start a multipart upload whose parts (but the last) are ``part_size`` bytes;
        conditions are checked no later than ``complete``.  ``size`` is the object's final
        size when the caller knows it (an upload at close), None while the file is still
        being written; a store may use it to size the request (Manta's one-stream PUT)."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key``; idempotent (no error when it is already gone).  On real-dir
        stores deleting a directory is ``remove_dir``'s job."""

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Remove several keys; stores with a bulk call override this."""
        for key in keys:
            await self.delete(key)

    @abc.abstractmethod
    async def copy(
        self,
        src: str,
        dst: str,
        *,
        metadata: Metadata | None = None,
        if_match: ETag | None = None,
    ) -> ObjectMeta:
        """Copy ``src`` to ``dst`` (server-side where ``capabilities.server_side_copy``).
        ``metadata`` None keeps the source's; otherwise replaces it.  ``if_match`` is a
        condition on the source."""

    async def copy_listed(self, listed: ObjectMeta, dst: str) -> None:
        """Copy an object a listing has just returned to ``dst``, a key known to be free,
        keeping its data and metadata (one step of a directory rename on a flat store).
        Stores use what the listing said (size, etag, kind) to skip the look at the
        source and the destination that ``copy`` makes."""
        await self.copy(listed.key, dst)

    async def delete_listed(self, listed: Sequence[ObjectMeta]) -> None:
        """Remove objects a listing has returned (the sources of a directory rename, once
        every copy is made); idempotent like ``delete``.  Stores use what the listing
        said to skip the look ``delete`` takes first."""
        await self.delete_many(o.key for o in listed)

    async def rename(self, src: str, dst: str) -> ObjectMeta:
        """Move one object; stores with ``cheap_rename`` override this with an O(1) call."""
        meta = await self.copy(src, dst)
        await self.delete(src)
        return meta

    async def make_dir(self, key: str, metadata: Metadata) -> ObjectMeta:
        """Create a directory (``key`` ends in ``/``).  Flat stores write the marker."""
        return await self.put(key, b"", metadata, content_type="application/x-directory")

    async def remove_dir(self, key: str) -> None:
        """Remove an empty directory (``key`` ends in ``/``); flat stores delete the marker.
        Raises ``NotEmpty`` on real-dir stores when it is not empty."""
        await self.delete(key)

    async def exchange(self, a: str, b: str) -> None:
        """Swap the objects at ``a`` and ``b`` atomically (``capabilities.atomic_exchange``)."""
        raise Unsupported(f"{self.capabilities.name}: atomic exchange of two names")

    def check_name(self, key: str) -> None:
        """Raise ``NameTooLong`` or ``InvalidName`` when the store would refuse ``key``
        (checked before anything is created, so the user gets a clear errno at once)."""
        if len(key.encode("utf-8", "surrogateescape")) > self.capabilities.max_key_length:
            raise NameTooLong(f"{key}: longer than {self.capabilities.max_key_length} bytes")

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
        """Write the first ``size`` bytes of the local file ``fd`` as ``key``, copied in
        the kernel (``capabilities.local`` stores); ``durable``: on disk before it returns
        (fsync), not just visible.  ``link_from`` (the path of ``fd``, exactly ``size``
        bytes long): the store may hard-link that file into place instead of copying it,
        when it is on the same filesystem (the caller sees ``st_nlink`` > 1 on ``fd`` then,
        and must not change that file any more).  Conditions as for ``put``."""
        raise Unsupported(f"{self.capabilities.name}: upload from a local file")

    def local_path(self, key: str) -> str | None:
        """The local file that holds ``key`` on ``capabilities.local`` stores (file://), so
        reads can go straight to it; None elsewhere."""
        return None

    async def sync(self, key: str) -> None:  # noqa: B027 - optional hook
        """Make what ``key`` holds durable (fsync) where a write can be visible before it
        is on disk (``capabilities.local`` stores, written with ``durable=False``);
        remote stores have nothing to do: their answer to a write means durable."""

    async def statfs(self) -> StoreUsage | None:
        """Space used and available, where the store can tell (file://); None otherwise."""
        return None

    @abc.abstractmethod
    async def set_metadata(
        self, key: str, metadata: Metadata, *, if_match: ETag | None = None
    ) -> ObjectMeta:
        """Replace the user metadata of ``key`` (a whole new set, not a merge) without
        rewriting its data where ``capabilities.metadata_update``; returns the new meta."""

    # -- classification and statistics --------------------------------------------------

    def is_transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` is worth retrying.  Backends translate transient SDK failures to
        ``TransientError`` already; this hook is for the odd case that needs context."""
        return isinstance(exc, TransientError)

    def statistics(self) -> dict[str, Any]:
        """Request and error counts for ``storefs status`` and benchmarks."""
        return {}
