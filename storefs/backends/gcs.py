"""``gs://BUCKET[/PREFIX]``: Google Cloud Storage through google-cloud-storage.

The SDK is blocking, so every call runs in ``trio.to_thread.run_sync`` under one
``CapacityLimiter`` sized to the HTTP connection pool (``-o connections=N``): no more threads
wait on the network than there are connections to wait on.  The SDK's own retries are
turned off (``retry=None`` on every call, ``max_retries=0`` on the pool): retrying is
``storefs.backends.retrying``'s job, and this module raises ``TransientError`` for 5xx, 429,
resets and timeouts.

Credentials, in this order: ``-o anonymous`` (public buckets, emulators); a credentials
JSON file (``-o credentials=PATH``, else ``$GOOGLE_APPLICATION_CREDENTIALS``, else the
``credentials`` setting of the config file's ``gcs`` section): a service-account key or any
other file ``google.auth`` loads; with ``$STORAGE_EMULATOR_HOST`` and no file, anonymous
(the SDK's convention for emulators); otherwise application default credentials (``gcloud
auth application-default login``, the GCE/GKE metadata server...).  ``-o endpoint=URL`` or
``$STORAGE_EMULATOR_HOST`` points the client at another server.

Layout (gcsfuse-compatible)
    A directory is a prefix, kept alive when empty by a zero-byte ``dir/`` placeholder.
    User metadata is the object's custom metadata (gcsfuse's ``gcsfuse_mtime``,
    ``goog-reserved-posix-*`` and ``goog-reserved-file-is-symlink`` keys are written by the
    filesystem core, ``metadata_style="gcsfuse"``); listings carry it, so
    ``metadata_complete`` is True.

Versions
    The etag storefs sees is the object's *generation* (decimal string): a new one for
    every write of the data, so chunk caches keyed on it never mix versions.  ``if_match``
    becomes ``ifGenerationMatch=G``, create-exclusive becomes ``ifGenerationMatch=0``, so two
    writers never silently overwrite each other.  Metadata updates change only the
    metageneration on GCS (fake-gcs-server bumps the generation too).

Checksums
    ``ObjectMeta.checksums`` holds ``crc32c`` and ``md5`` **base64-encoded**, exactly as GCS
    reports them (``md5`` is absent for composite objects).  Uploads send the CRC32C of their
    bytes (the server refuses a mismatch) and compare the one the server reports; a ranged
    read that turns out to cover the whole object is checked against the object's CRC32C.

Large files
    ``begin_upload`` opens a *resumable upload session*; parts must come in order
    (``capabilities.sequential_parts``) and are streamed as they arrive, in chunks that are
    multiples of 256 KiB (GCS requires it); less than 256 KiB plus one part stays in memory.

Copy and rename are server-side ``rewrite`` calls (looping on the rewrite token for big
objects); rename deletes the source afterwards, guarded by its generation.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import logging
import os
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import google.auth
import google.auth.exceptions
import google_crc32c
import requests
import requests.adapters
import trio
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage

from storefs import config
from storefs.backends._netreason import network_reason
from storefs.backends._options import flag, positive
from storefs.backends.base import (
    Backend,
    Capabilities,
    ETag,
    ListPage,
    Metadata,
    ObjectMeta,
    Upload,
)
from storefs.errors import (
    AlreadyExists,
    AuthError,
    ConfigError,
    ConnectError,
    IntegrityError,
    InvalidName,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    StorefsError,
    TooLarge,
    TransientError,
)
from storefs.parallel import fan_out
from storefs.source import Source

log = logging.getLogger(__name__)

# google-auth and google-crc32c ship partial annotations (untyped constructors); seen
# through Any, mypy --strict checks this module's own code and not theirs
_Checksum: Any = google_crc32c.Checksum
_Anonymous: Any = AnonymousCredentials
_Session: Any = AuthorizedSession
_load_credentials_file: Any = google.auth.load_credentials_from_file

T = TypeVar("T")

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

OPTIONS: dict[str, str] = {
    "credentials": "credentials JSON file (service-account key); "
                   "default $GOOGLE_APPLICATION_CREDENTIALS, then application default credentials",
    "anonymous": "send no credentials (public buckets, emulators); default off",
    "endpoint": "API endpoint URL; default $STORAGE_EMULATOR_HOST, else https://storage.googleapis.com",
    "project": "project billed for requester-pays buckets (userProject); default none",
    "connections": "HTTP connections (and worker threads) to GCS; default 16",
    "timeout": "seconds to wait for an answer to one request; default 60",
}

#: GCS wants every chunk of a resumable upload but the last to be a multiple of this
RESUMABLE_QUANTUM = 256 * KiB

_SCOPES = ("https://www.googleapis.com/auth/devstorage.full_control",)

def _capabilities(max_key_length: int) -> Capabilities:
    return Capabilities(
        name="gcs",
        real_directories=False,
        server_side_copy=True,
        cheap_rename=False,
        metadata_update=True,
        conditional_put=True,
        conditional_get=True,
        multipart_threshold=8 * MiB,
        min_part_size=RESUMABLE_QUANTUM,
        max_part_size=5 * TiB,
        # a resumable stream has no part count limit; this only bounds the numbering
        max_parts=1_000_000,
        # one request per part: fewer, larger requests upload faster (16 MiB: a third
        # slower on fake-gcs-server); memory holds one part per file being written
        part_size=32 * MiB,
        sequential_parts=True,
        # custom metadata: 8 KiB per object (keys + values)
        max_metadata_size=8 * KiB,
        max_object_size=5 * TiB,
        ordered_listing=True,
        list_page_size=1000,
        max_key_length=max_key_length,
        metadata_style="gcsfuse",
    )

# -- errors, kept as data -------------------------------------------------------------------

#: HTTP status -> (storefs error, what it means to the user)
STATUS_ERRORS: dict[int, tuple[type[StorefsError], str]] = {
    400: (InvalidName, "refused as invalid by GCS"),
    401: (AuthError, "credentials refused"),
    403: (PermissionDenied, "access denied"),
    404: (NotFound, "not found"),
    408: (TransientError, "request timed out on the server"),
    409: (PreconditionFailed, "conflicting concurrent change"),
    410: (StorefsError, "upload session expired"),
    412: (PreconditionFailed, "changed by another writer (generation precondition failed)"),
    413: (TooLarge, "too large for GCS"),
    429: (TransientError, "rate limited by GCS"),
    500: (TransientError, "GCS internal error"),
    502: (TransientError, "bad gateway"),
    503: (TransientError, "GCS unavailable"),
    504: (TransientError, "gateway timeout"),
}

#: exception class -> (storefs error, meaning); None meaning = the network reason
EXCEPTION_ERRORS: tuple[tuple[type[BaseException], type[StorefsError], str | None], ...] = (
    (google.auth.exceptions.RefreshError, AuthError,
     "credentials refused while getting an access token"),
    (google.auth.exceptions.DefaultCredentialsError, AuthError, "unusable credentials"),
    (google.auth.exceptions.TransportError, TransientError, "cannot reach the token endpoint"),
    (requests.exceptions.Timeout, TransientError, "timed out"),
    (requests.exceptions.ConnectionError, TransientError, None),
    (requests.exceptions.ChunkedEncodingError, TransientError, "connection broken mid-answer"),
)

#: what a failure of the check in ``connect`` means, by status
CONNECT_ERRORS: dict[int, tuple[type[StorefsError], str]] = {
    401: (AuthError, "credentials refused (401)"),
    403: (AuthError, "these credentials may not list the bucket (403 access denied)"),
    404: (NotFound, "no such bucket"),
}


def _status_of(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def translate(exc: BaseException, where: str, *, exists_error: bool = False) -> StorefsError:
    """The storefs error for an SDK or HTTP failure of the request about ``where``.

    ``exists_error``: the request was create-exclusive, so a failed precondition means the
    object exists (``AlreadyExists``), not that it changed.
    """
    if isinstance(exc, StorefsError):
        return exc
    for cls, err, meaning in EXCEPTION_ERRORS:
        if isinstance(exc, cls):
            return err(f"{where}: {meaning or network_reason(exc)}")
    status = _status_of(exc)
    if status is None:
        return StorefsError(f"{where}: {type(exc).__name__}")
    if status == 412 and exists_error:
        return AlreadyExists(f"{where}: already exists")
    err, meaning = STATUS_ERRORS.get(
        status, (TransientError, "server error") if status >= 500 else (StorefsError, "refused")
    )
    return err(f"{where}: {meaning} (HTTP {status})")


def _raise_for(response: requests.Response, where: str, *, exists_error: bool = False) -> None:
    if response.status_code >= 400:
        raise translate(_HttpStatus(response.status_code), where, exists_error=exists_error)


class _HttpStatus(Exception):
    """A non-SDK HTTP answer, so ``translate`` sees it through the same table."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# -- helpers ----------------------------------------------------------------------------------


def _crc32c_b64(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(_Checksum(bytes(data)).digest()).decode()


def _parse_time(value: Any) -> float:
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        with contextlib.suppress(ValueError):
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return 0.0


def _generation_of(etag: ETag | None, key: str) -> int | None:
    """The generation an etag stands for; an etag that is no generation matches nothing."""
    if etag is None:
        return None
    if not str(etag).isdigit():
        raise PreconditionFailed(f"{key}: changed since it was read (etag {etag!r})")
    return int(etag)




def _with_scheme(url: str, default: str) -> str:
    url = url.strip().rstrip("/")
    return url if "://" in url else f"{default}://{url}"


# -- the backend ------------------------------------------------------------------------------


class GcsBackend(Backend):
    """One bucket (and optional prefix) of Google Cloud Storage."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        credentials_file: str | None = None,
        anonymous: bool = False,
        project: str | None = None,
        connections: int = 16,
        timeout: float = 60.0,
    ) -> None:
        self.bucket_name = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.credentials_file = credentials_file
        self.anonymous = anonymous
        self.project = project
        self.connections = connections
        self.timeout = (min(10.0, timeout), timeout)
        room = 1024 - len(prefix.encode())
        self.capabilities = _capabilities(room)
        self._limiter = trio.CapacityLimiter(connections)
        self._lock = threading.Lock()
        self._client: Any = None
        self._bucket: Any = None
        self._session: Any = None
        self._api = "https://storage.googleapis.com"
        self._requests: Counter[str] = Counter()

    # -- plumbing ---------------------------------------------------------------------------

    def describe(self) -> str:
        where = f"gs://{self.bucket_name}/{self.prefix}"
        return f"{where} at {self.endpoint}" if self.endpoint else where

    def _where(self, key: str = "") -> str:
        return f"gs://{self.bucket_name}/{self.prefix}{key}"

    def _credentials(self) -> Any:
        if self.anonymous:
            return _Anonymous()
        if self.credentials_file:
            path = os.path.expanduser(self.credentials_file)
            if not os.path.isfile(path):
                raise ConfigError(f"gcs: credentials file {self.credentials_file}: no such file")
            try:
                creds, _ = _load_credentials_file(path, scopes=_SCOPES)
            except google.auth.exceptions.DefaultCredentialsError as exc:
                first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                raise AuthError(
                    f"gcs: credentials file {self.credentials_file} is not usable: {first}"
                ) from exc
            return creds
        try:
            creds, _ = google.auth.default(scopes=_SCOPES)
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise AuthError(
                "gcs: no Google credentials found: set GOOGLE_APPLICATION_CREDENTIALS to a "
                "service-account key, run 'gcloud auth application-default login', or use "
                "-o anonymous for a public bucket"
            ) from exc
        return creds

    def _ensure_client(self) -> Any:
        """The bucket handle, building the client on first use (in a worker thread: finding
        application default credentials may ask the metadata server)."""
        with self._lock:
            if self._bucket is not None:
                return self._bucket
            creds = self._credentials()
            session = _Session(creds)
            # the pool is as large as the thread limiter, and never retries by itself
            adapter = requests.adapters.HTTPAdapter(
                pool_connections=4, pool_maxsize=self.connections, max_retries=0
            )
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            options = {"api_endpoint": self.endpoint} if self.endpoint else None
            client = storage.Client(
                project=None, credentials=creds, _http=session, client_options=options
            )
            self._session = session
            self._api = str(client.api_endpoint or self._api).rstrip("/")
            self._client = client
            self._bucket = client.bucket(self.bucket_name, user_project=self.project)
            return self._bucket

    async def _run(self, op: str, fn: Callable[[], T]) -> T:
        self._requests[op] += 1
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

    def _blob(self, key: str, **kw: Any) -> Any:
        return self._ensure_client().blob(self.prefix + key, **kw)

    def _meta(self, resource: Mapping[str, Any]) -> ObjectMeta:
        name = str(resource.get("name", ""))
        key = name[len(self.prefix):] if name.startswith(self.prefix) else name
        checksums = {k: str(resource[f]) for k, f in (("crc32c", "crc32c"), ("md5", "md5Hash"))
                     if resource.get(f)}
        return ObjectMeta(
            key=key,
            size=int(resource.get("size") or 0),
            etag=ETag(str(resource.get("generation") or "")),
            mtime=_parse_time(resource.get("updated") or resource.get("timeCreated")),
            is_dir=key.endswith("/"),
            content_type=resource.get("contentType"),
            metadata={str(k): "" if v is None else str(v)
                      for k, v in (resource.get("metadata") or {}).items()},
            checksums=checksums,
            storage_class=resource.get("storageClass"),
            metadata_complete=True,
        )

    def _blob_meta(self, blob: Any) -> ObjectMeta:
        # the SDK keeps the JSON resource GCS answered with; one parser for all answers
        return self._meta(blob._properties)

    # -- life cycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        def check() -> None:
            bucket = self._ensure_client()
            it = self._client.list_blobs(bucket, prefix=self.prefix or None, max_results=1,
                                         retry=None, timeout=self.timeout)
            next(iter(it.pages), None)

        try:
            await self._run("connect", check)
        except StorefsError:
            raise
        except Exception as exc:
            raise self._connect_error(exc) from exc

    def _connect_error(self, exc: BaseException) -> StorefsError:
        where = f"gs://{self.bucket_name}"
        at = self.endpoint or "storage.googleapis.com"
        if isinstance(exc, requests.exceptions.RequestException) and _status_of(exc) is None:
            return ConnectError(f"{where}: cannot reach GCS at {at}: {network_reason(exc)}")
        if isinstance(exc, google.auth.exceptions.TransportError):
            return ConnectError(f"{where}: cannot reach the token endpoint: "
                                f"{network_reason(exc)}")
        status = _status_of(exc)
        if status in CONNECT_ERRORS:
            err, meaning = CONNECT_ERRORS[status]
            return err(f"{where}: {meaning}")
        if isinstance(exc, google.auth.exceptions.RefreshError):
            reason = str(exc.args[0]).splitlines()[0][:160] if exc.args else ""
            return AuthError(f"{where}: credentials refused by the token endpoint"
                             + (f" ({reason})" if reason else ""))
        return translate(exc, where)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def statistics(self) -> dict[str, Any]:
        return {"requests": dict(self._requests)}

    def check_name(self, key: str) -> None:
        super().check_name(key)
        if "\r" in key or "\n" in key:
            raise InvalidName(f"{key!r}: GCS object names cannot hold CR or LF")

    # -- reads ------------------------------------------------------------------------------

    async def head(self, key: str) -> ObjectMeta:
        def call() -> ObjectMeta:
            blob = self._blob(key)
            blob.reload(retry=None, timeout=self.timeout)
            return self._blob_meta(blob)

        try:
            return await self._run("head", call)
        except Exception as exc:
            raise translate(exc, self._where(key)) from exc

    async def list_page(
        self, prefix: str, *, delimiter: str = "/", token: str | None = None, limit: int = 0
    ) -> ListPage:
        limit = limit or self.capabilities.list_page_size
        gcs_token, seen = json.loads(token) if token else (None, "")

        def call() -> tuple[list[ObjectMeta], list[str], str | None]:
            bucket = self._ensure_client()
            it = self._client.list_blobs(
                bucket, prefix=self.prefix + prefix or None, delimiter=delimiter or None,
                max_results=limit, page_token=gcs_token, retry=None, timeout=self.timeout,
            )
            page = next(iter(it.pages), None)
            if page is None:
                return [], [], None
            objects = [self._blob_meta(b) for b in page]
            prefixes = [p[len(self.prefix):] for p in page.prefixes]
            return objects, prefixes, it.next_page_token

        try:
            objects, prefixes, nxt = await self._run("list", call)
        except Exception as exc:
            raise translate(exc, self._where(prefix)) from exc
        # GCS returns each common prefix once; fake-gcs-server repeats all of them on every
        # page.  Dropping prefixes at or below the highest entry already returned is right
        # for both, because a listing never goes backwards.
        prefixes = sorted(p for p in set(prefixes) if p > seen)
        high = max([seen, *(o.key for o in objects), *prefixes])
        next_token = json.dumps([nxt, high]) if nxt else None
        return ListPage(objects, prefixes, next_token)

    async def get_range(
        self, key: str, start: int, end: int, *, if_match: ETag | None = None
    ) -> bytes:
        if end <= start:
            return b""
        want = _generation_of(if_match, key)
        where = self._where(key)

        def call() -> bytes:
            self._ensure_client()
            assert self._session is not None
            name = urllib.parse.quote(self.prefix + key, safe="")
            url = (f"{self._api}/download/storage/v1/b/{urllib.parse.quote(self.bucket_name)}"
                   f"/o/{name}?alt=media")
            if want is not None:
                url += f"&ifGenerationMatch={want}"
            if self.project:
                url += f"&userProject={urllib.parse.quote(self.project)}"
            # "Accept-Encoding: gzip" asks for the stored bytes as they are (no decompressive
            # transcoding), so ranges and sizes agree with the object's metadata
            headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "gzip"}
            with self._session.get(url, headers=headers, timeout=self.timeout,
                                   stream=True) as r:
                if r.status_code == 416:
                    return b""
                _raise_for(r, where)
                data: bytes = r.raw.read(decode_content=False)
                generation = r.headers.get("X-Goog-Generation")
                hashes = r.headers.get("X-Goog-Hash", "")
                total = _total_of(r.headers.get("Content-Range"), r.status_code, len(data))
            if want is not None and generation is not None and generation != str(want):
                # the emulator ignores ifGenerationMatch on downloads; GCS answers 412
                raise PreconditionFailed(f"{where}: changed since it was read "
                                         f"(generation {generation} != {want})")
            if start == 0 and total == len(data):
                crc = _hash_of(hashes, "crc32c")
                if crc is not None and crc != _crc32c_b64(data):
                    raise IntegrityError(f"{where}: CRC32C of the bytes read does not match")
            return data

        try:
            return await self._run("get", call)
        except Exception as exc:
            raise translate(exc, where) from exc

    # -- writes -----------------------------------------------------------------------------

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
        generation = 0 if if_none_match else _generation_of(if_match, key)
        crc = _crc32c_b64(data)
        where = self._where(key)

        def call() -> ObjectMeta:
            blob = self._blob(key)
            blob.metadata = dict(metadata) or None
            # sent with the object resource: GCS refuses the upload when the bytes it got
            # have another CRC32C
            blob.crc32c = crc
            blob.upload_from_string(
                data, content_type=content_type or "application/octet-stream",
                if_generation_match=generation, checksum=None, retry=None,
                timeout=self.timeout,
            )
            if blob.crc32c is not None and blob.crc32c != crc:
                raise IntegrityError(f"{where}: GCS stored bytes with another CRC32C")
            return self._blob_meta(blob)

        try:
            return await self._run("put", call)
        except Exception as exc:
            raise translate(exc, where, exists_error=if_none_match) from exc

    async def make_dir(self, key: str, metadata: Metadata) -> ObjectMeta:
        # gcsfuse's placeholder: a zero-byte object named "dir/"
        return await self.put(key, b"", metadata, content_type="application/x-directory")

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
        if part_size < self.capabilities.min_part_size:
            raise ConfigError(f"gcs: part size {part_size} is below "
                              f"{self.capabilities.min_part_size}")
        generation = 0 if if_none_match else _generation_of(if_match, key)
        where = self._where(key)

        def call() -> str:
            blob = self._blob(key)
            blob.metadata = dict(metadata) or None
            url: str = blob.create_resumable_upload_session(
                content_type=content_type or "application/octet-stream",
                if_generation_match=generation, checksum=None, retry=None,
                timeout=self.timeout,
            )
            return url

        try:
            session_url = await self._run("begin_upload", call)
        except Exception as exc:
            raise translate(exc, where, exists_error=if_none_match) from exc
        return GcsUpload(self, key, session_url, dict(metadata), part_size, content_type,
                         generation, if_none_match)

    async def delete(self, key: str) -> None:
        def call() -> None:
            with contextlib.suppress(gexc.NotFound):
                self._blob(key).delete(retry=None, timeout=self.timeout)

        try:
            await self._run("delete", call)
        except Exception as exc:
            raise translate(exc, self._where(key)) from exc

    async def delete_many(self, keys: Iterable[str]) -> None:
        # one request per key, in parallel up to the limiter (the emulator has no batch API)
        async with fan_out() as nursery:
            for key in keys:
                nursery.start_soon(self.delete, key)

    async def copy(
        self,
        src: str,
        dst: str,
        *,
        metadata: Metadata | None = None,
        if_match: ETag | None = None,
    ) -> ObjectMeta:
        meta, _ = await self._rewrite(src, dst, metadata, if_match)
        return meta

    async def _rewrite(
        self, src: str, dst: str, metadata: Metadata | None, if_match: ETag | None,
        source: ObjectMeta | None = None,
    ) -> tuple[ObjectMeta, int]:
        """Server-side copy of ``source`` (what a HEAD of ``src`` says unless given);
        returns the new object's meta and the source generation."""
        if source is None:
            source = await self.head(src)
        want = _generation_of(if_match, src)
        if want is not None and source.etag != str(want):
            raise PreconditionFailed(f"{self._where(src)}: changed since it was read")
        generation = int(source.etag)
        content_type = source.content_type

        def call() -> ObjectMeta:
            src_blob = self._blob(src)
            dst_blob = self._blob(dst)
            if metadata is not None:
                # a destination resource replaces the source's metadata as a whole; give
                # the content type again so it is not lost with it
                dst_blob.metadata = dict(metadata) or None
                dst_blob.content_type = content_type
            token = None
            while True:
                token, _, _ = dst_blob.rewrite(
                    src_blob, token=token, if_source_generation_match=generation,
                    retry=None, timeout=self.timeout,
                )
                if token is None:
                    return self._blob_meta(dst_blob)

        try:
            return await self._run("copy", call), generation
        except Exception as exc:
            raise translate(exc, f"{self._where(src)} -> {dst}") from exc

    async def _delete_generation(self, key: str, generation: int) -> None:
        """Delete ``key`` at ``generation`` only: a newer write to it is not thrown away."""
        def call() -> None:
            with contextlib.suppress(gexc.NotFound, gexc.PreconditionFailed):
                self._blob(key).delete(if_generation_match=generation, retry=None,
                                       timeout=self.timeout)

        try:
            await self._run("delete", call)
        except Exception as exc:
            raise translate(exc, self._where(key)) from exc

    async def rename(self, src: str, dst: str) -> ObjectMeta:
        meta, generation = await self._rewrite(src, dst, None, None)
        await self._delete_generation(src, generation)
        return meta

    async def copy_listed(self, listed: ObjectMeta, dst: str) -> None:
        try:
            await self._rewrite(listed.key, dst, None, None, source=listed)
        except PreconditionFailed:
            await self.copy(listed.key, dst)  # written again since it was listed

    async def delete_listed(self, listed: Sequence[ObjectMeta]) -> None:
        # the generations listed (and copied) only
        async with fan_out() as nursery:
            for obj in listed:
                nursery.start_soon(self._delete_generation, obj.key, int(obj.etag))

    async def set_metadata(
        self, key: str, metadata: Metadata, *, if_match: ETag | None = None
    ) -> ObjectMeta:
        want = _generation_of(if_match, key)
        where = self._where(key)

        def call() -> ObjectMeta:
            blob = self._blob(key)
            blob.reload(retry=None, timeout=self.timeout, if_generation_match=want)
            if want is not None and blob.generation != want:
                raise PreconditionFailed(f"{where}: changed since it was read")
            blob.metadata = dict(metadata)
            # objects.update replaces the whole custom-metadata set (a patch would merge
            # it, and fake-gcs-server keeps patched-away keys as empty strings); the
            # metageneration guard makes it a compare-and-swap on the metadata
            blob.update(if_generation_match=want,
                        if_metageneration_match=blob.metageneration,
                        retry=None, timeout=self.timeout)
            return self._blob_meta(blob)

        try:
            return await self._run("set_metadata", call)
        except Exception as exc:
            raise translate(exc, where) from exc


def _total_of(content_range: str | None, status: int, got: int) -> int | None:
    """The object's size from a download answer (``bytes a-b/TOTAL``), when it tells."""
    if status == 200:
        return got
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
    return None


def _hash_of(x_goog_hash: str, algorithm: str) -> str | None:
    for part in x_goog_hash.split(","):
        name, _, value = part.strip().partition("=")
        if name == algorithm and value:
            return value
    return None


class GcsUpload(Upload):
    """A resumable upload session, fed part by part, in order.

    Bytes are sent as soon as a multiple of 256 KiB (and more) is at hand; at least one byte
    is always held back, so ``complete`` sends a non-empty last chunk that carries the total
    size and the CRC32C of the whole object.  After a failed request the session's state
    is asked from GCS before anything more is sent, so a retried ``write_part`` or
    ``complete`` (the retry wrapper's) resumes exactly where the server is.
    """

    def __init__(self, backend: GcsBackend, key: str, session_url: str, metadata: dict[str, str],
                 part_size: int, content_type: str | None, generation: int | None,
                 create_only: bool) -> None:
        self.backend = backend
        self.key = key
        self._url = session_url  # a capability URL: never logged
        self._metadata = metadata
        self._part_size = part_size
        self._content_type = content_type
        self._generation = generation
        self._create_only = create_only
        self._next = 1
        self._last_len = part_size
        self._size = 0
        self._sent = 0
        self._pending = bytearray()
        self._crc: Any = _Checksum()
        self._resync = False
        self._final: dict[str, Any] | None = None
        self._aborted = False
        self._lock = trio.Lock()

    def _where(self) -> str:
        return self.backend._where(self.key)

    async def write_part(self, number: int, data: bytes) -> None:
        async with self._lock:
            if self._aborted or self._final is not None:
                raise StorefsError(f"{self._where()}: upload already finished")
            if number < self._next:
                # a part already taken, sent again after a failed flush: finish that flush
                await self._flush()
                return
            if number != self._next:
                raise StorefsError(f"{self._where()}: part {number} out of order, expected "
                                   f"{self._next} (GCS uploads are one sequential stream)")
            if self._last_len != self._part_size:
                raise StorefsError(f"{self._where()}: part {number - 1} was shorter than the "
                                   f"part size, so it had to be the last")
            self._crc.update(bytes(data))
            self._pending += data
            self._size += len(data)
            self._last_len = len(data)
            self._next += 1
            await self._flush()

    def _put(self, body: bytes, content_range: str,
             headers: Mapping[str, str] | None = None) -> requests.Response:
        session = self.backend._session
        assert session is not None
        response: requests.Response = session.put(
            self._url, data=body, headers={"Content-Range": content_range, **(headers or {})},
            timeout=self.backend.timeout)
        return response

    def _take(self, response: requests.Response) -> bool:
        """Record a 308 (more wanted) or a final answer; True when the upload is done."""
        if response.status_code == 308:
            committed = 0
            rng = response.headers.get("Range")
            if rng and "-" in rng:
                committed = int(rng.rsplit("-", 1)[1]) + 1
            if committed < self._sent or committed > self._sent + len(self._pending):
                raise TransientError(f"{self._where()}: upload session out of step "
                                     f"(server has {committed} bytes, we sent {self._sent})")
            del self._pending[: committed - self._sent]
            self._sent = committed
            return False
        _raise_for(response, self._where(), exists_error=self._create_only)
        self._final = response.json()
        return True

    def _flush_sync(self) -> None:
        try:
            if self._resync:
                # ask where the server is (an empty PUT "bytes */*"); only after a failure,
                # because fake-gcs-server finalises the upload on this query
                if self._take(self._put(b"", "bytes */*")):
                    return
                self._resync = False
            stalls = 0
            while True:
                n = (len(self._pending) - 1) // RESUMABLE_QUANTUM * RESUMABLE_QUANTUM
                if n <= 0:
                    return
                before = self._sent
                with memoryview(self._pending) as pending:
                    chunk = bytes(pending[:n])  # one copy: a bytearray slice would be two
                if self._take(self._put(chunk, f"bytes {self._sent}-{self._sent + n - 1}/*")):
                    return
                stalls = stalls + 1 if self._sent == before else 0
                if stalls >= 3:
                    raise TransientError(f"{self._where()}: GCS accepts no more bytes")
        except BaseException:
            self._resync = True
            raise

    async def _flush(self) -> None:
        try:
            await self.backend._run("upload_part", self._flush_sync)
        except Exception as exc:
            raise translate(exc, self._where(), exists_error=self._create_only) from exc

    async def complete(self) -> ObjectMeta:
        async with self._lock:
            if self._final is None and self._size == 0:
                # nothing was streamed: an empty object is one plain, conditional write
                await self.abort()
                return await self.backend.put(
                    self.key, b"", self._metadata, content_type=self._content_type,
                    if_match=None if self._generation in (None, 0) else ETag(str(self._generation)),
                    if_none_match=self._create_only,
                )
            if self._final is None:
                await self._flush()
            if self._final is None:
                await self._check_condition()
                await self._finish()
            assert self._final is not None
            stored = self._final.get("crc32c")
            if stored is not None and stored != self._crc_b64():
                raise IntegrityError(f"{self._where()}: GCS stored bytes with another CRC32C")
            return self.backend._meta(self._final)

    def _crc_b64(self) -> str:
        return base64.b64encode(self._crc.digest()).decode()

    async def _check_condition(self) -> None:
        # GCS checks ifGenerationMatch when the upload is finalised; fake-gcs-server does
        # not, so look first (one HEAD per large upload) and fail before the last chunk
        if self._generation is None:
            return
        try:
            current: str | None = (await self.backend.head(self.key)).etag
        except NotFound:
            current = None
        if self._create_only and current is not None:
            raise AlreadyExists(f"{self._where()}: already exists")
        if not self._create_only and current != str(self._generation):
            raise PreconditionFailed(f"{self._where()}: changed by another writer "
                                     f"(generation precondition failed)")

    async def _finish(self) -> None:
        def call() -> None:
            try:
                if self._resync:
                    if self._take(self._put(b"", "bytes */*")):
                        return
                    self._resync = False
                body = bytes(self._pending)
                first, last = self._sent, self._sent + len(body) - 1
                rng = f"bytes {first}-{last}/{self._size}" if body else f"bytes */{self._size}"
                response = self._put(body, rng, {"X-Goog-Hash": f"crc32c={self._crc_b64()}"})
                if not self._take(response):
                    raise TransientError(f"{self._where()}: GCS wants more bytes than were "
                                         f"written ({self._sent} of {self._size})")
            except BaseException:
                self._resync = True
                raise

        try:
            await self.backend._run("complete_upload", call)
        except Exception as exc:
            raise translate(exc, self._where(), exists_error=self._create_only) from exc

    async def abort(self) -> None:
        if self._aborted or self._final is not None:
            return
        self._aborted = True
        self._pending.clear()
        session = self.backend._session

        def call() -> None:
            # GCS cancels a session on DELETE (answering 499); an unreachable server lets
            # it expire after a week, so failures here are not worth an error
            if session is not None:
                with contextlib.suppress(requests.exceptions.RequestException):
                    session.delete(self._url, timeout=self.backend.timeout).close()

        await self.backend._run("abort_upload", call)


# -- construction -----------------------------------------------------------------------------


def open_backend(source: Source, options: Mapping[str, str]) -> GcsBackend:
    """Build the backend from the source, ``-o`` options, environment and config file."""
    settings = dict(config.section("gcs"))
    unknown = sorted(set(settings) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"config file, section gcs: unknown setting {unknown[0]!r}")
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        settings["endpoint"] = _with_scheme(emulator, "http")
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        settings["credentials"] = os.environ["GOOGLE_APPLICATION_CREDENTIALS"]
    settings.update(options)
    endpoint = settings.get("endpoint")
    anonymous = "anonymous" in settings and flag("gcs", "anonymous", settings["anonymous"])
    credentials = settings.get("credentials") or None
    if emulator and not credentials and "endpoint" not in options:
        anonymous = True  # the SDK's rule: an emulator needs no credentials
    if anonymous and "credentials" in options:
        raise ConfigError("gcs: -o anonymous and -o credentials exclude each other")
    return GcsBackend(
        source.bucket,
        source.prefix,
        endpoint=_with_scheme(endpoint, "https") if endpoint else None,
        credentials_file=None if anonymous else credentials,
        anonymous=anonymous,
        project=settings.get("project") or None,
        connections=int(positive("gcs", "connections", settings.get("connections", "16"),
                                 integer=True)),
        timeout=positive("gcs", "timeout", settings.get("timeout", "60")),
    )
