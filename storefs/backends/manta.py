"""``manta:/LOGIN/stor/PATH``: Joyent/Triton Manta over its REST API (httpx on trio).

Manta has real directories, immutable objects, SnapLinks (v1) and metadata updates that do
not rewrite data; the wire protocol is in ``shared/specs/manta-protocol.md``.  How the
interface maps onto it:

``head``
    ``HEAD``; a directory (``Content-Type: ...; type=directory``) comes back as
    ``ObjectMeta(is_dir=True, key="a/b/")`` with or without the trailing ``/``.
``list_page``
    ``GET dir?limit=N&marker=NAME`` (NDJSON).  The marker is inclusive, so a page after the
    first asks for one more entry and drops the repeated one.  Subdirectories are
    ``is_dir`` entries in ``objects``.  Entries carry size, etag, mtime and MD5 but not
    ``m-*`` headers (``metadata_complete=False``).  Order is Manta's: by entry name, so a
    directory ``foo/`` sorts before ``foo.txt`` (hence ``ordered_listing=False``).
    ``delimiter=""`` walks the tree depth-first, directories included.
``get_range``
    ``GET`` with ``Range`` (and ``If-Match`` with the unquoted etag).  When the whole object
    fits in the range asked for and its size is known from a recent head/listing, the
    request is a plain ``GET`` instead, so the reply carries ``Content-MD5`` and the bytes
    are checked against it (``IntegrityError`` on a mismatch).
``put``
    ``PUT`` with ``Content-Length`` and ``Content-MD5``; the reply's ``Computed-MD5`` must
    match.  ``if_match`` sends ``If-Match``.  ``if_none_match``: Manta has no reliable
    create-exclusive (``If-None-Match: *`` always fails, §4.6), so it is ``HEAD`` then
    ``PUT`` with ``If-None-Match: <random uuid>``; a writer that creates the name between
    the two wins the race silently.
``begin_upload``
    By default (``-o uploads=stream``) one ``PUT`` whose body is fed part by part as the file
    is written (``sequential_parts``): chunked while the size is unknown, with
    ``Content-Length`` when the caller knows it.  No spool of its own and no commit, which on
    Manta re-reads every byte of the parts on the server.  Content-MD5 cannot precede a body
    that is still being written, so the MD5 of the bytes sent is checked against the reply's
    ``Computed-MD5`` instead.  A stream that breaks part-way raises ``UploadInterrupted``:
    write-back starts the upload over.  ``-o uploads=multipart`` uses Manta's multipart
    upload instead (parts >= 5 MiB, at most 800, numbered from 0 on the wire, sent in
    parallel; conditions checked with a ``HEAD`` just before the commit); sub-users may not
    use it, so for them it is always the stream.
``copy`` / ``rename``
    v1: a SnapLink (``PUT`` ``type=link``, O(1), no data copy) [+ ``DELETE``].  When the
    server answers ``SnaplinksDisabledError`` (Manta v2) the backend remembers it and
    streams ``GET`` -> ``PUT`` (bounded memory) [+ ``DELETE``] from then on.
``set_metadata``
    ``PUT ?metadata=true`` with an empty chunked body (Manta refuses any Content-Length
    there).  It replaces the whole header set, so the other stored headers (``role-tag``,
    ``cache-control``, ...) are read with a ``HEAD`` first and sent again.  The etag does
    not change; the data is not rewritten.
``make_dir`` / ``remove_dir``
    ``HEAD`` first (PutDirectory never says "exists" and silently replaces an object),
    then ``PUT`` ``type=directory``.  ``remove_dir`` sends ``DELETE`` with a random
    ``If-Match``, which directories ignore and objects fail, so it never removes a file.

Checksums: ``ObjectMeta.checksums["md5"]`` is the full-object MD5 **base64-encoded**, as
Manta reports it (``Content-MD5``, listings' ``contentMD5``, ``Computed-MD5``).

User metadata is kept in ``m-*`` headers (the ``Metadata`` keys are the header names with
``m-`` stripped, lower-case).  Manta keeps about 4 KiB of them and silently drops the
rest, so a larger set is refused here with ``TooLarge`` instead.

Errors are translated by ``storefs.backends.manta_errors`` (a table); the backend never
retries: 5xx, resets and timeouts are ``TransientError`` for ``storefs.backends.retrying``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import email.utils
import hashlib
import json
import logging
import os
import ssl
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import httpx
import trio
from cachetools import LRUCache

from storefs import config as config_file
from storefs.backends._http_reads import use_large_reads
from storefs.backends.base import (
    Backend,
    Capabilities,
    ETag,
    GiB,
    ListPage,
    Metadata,
    MiB,
    ObjectMeta,
    Upload,
)
from storefs.backends.manta_auth import MantaAuth, Principal, SigningKey, find_key
from storefs.backends.manta_errors import error_for
from storefs.errors import (
    AlreadyExists,
    AuthError,
    ConfigError,
    ConnectError,
    IntegrityError,
    InvalidName,
    IsADirectory,
    NotADirectory,
    NotFound,
    PreconditionFailed,
    StorefsError,
    TooLarge,
    TransientError,
    Unsupported,
    UploadInterrupted,
)
from storefs.parallel import fan_out
from storefs.source import Source

log = logging.getLogger(__name__)

OPTIONS: dict[str, str] = {
    "url": "Manta endpoint, e.g. https://us-central.manta.mnx.io (default: $MANTA_URL)",
    "user": "account login that signs requests (default: $MANTA_USER, else the path's login)",
    "key_id": "fingerprint of the SSH key, MD5 or SHA256 as ssh-keygen -l prints it "
              "(default: $MANTA_KEY_ID)",
    "key_file": "private key file (default: the key_id's key from ssh-agent or ~/.ssh)",
    "subuser": "sign as this sub-user of the account (default: $MANTA_SUBUSER)",
    "role": "roles to activate, comma-separated (default: $MANTA_ROLE)",
    "tls_insecure": "true: do not verify the server's TLS certificate "
                    "(default: $MANTA_TLS_INSECURE)",
    "anonymous": "true: send no credentials (read-only mounts of /LOGIN/public)",
    "connections": "HTTP connections to keep open (default 16); streams of files being "
                   "written have one each besides",
    "timeout": "seconds a request may stall before it fails (default 60)",
    "uploads": "how large files go up: stream (one PUT fed as the file is written, the "
               "default) or multipart (Manta's multipart upload, parts in parallel)",
}

#: option -> environment variable
_ENV = {"url": "MANTA_URL", "user": "MANTA_USER", "key_id": "MANTA_KEY_ID",
        "subuser": "MANTA_SUBUSER", "role": "MANTA_ROLE", "tls_insecure": "MANTA_TLS_INSECURE"}

DIR_CONTENT_TYPE = "application/json; type=directory"
LINK_CONTENT_TYPE = "application/json; type=link"
#: Manta keeps about this many bytes of m-* headers (names + values) and drops the rest
M_HEADER_LIMIT = 4096
#: headers besides m-* that a metadata update would drop unless sent again
_KEPT_HEADERS = ("role-tag", "cache-control", "surrogate-key", "content-disposition",
                 "access-control-allow-origin", "access-control-allow-methods",
                 "access-control-expose-headers", "access-control-allow-headers",
                 "access-control-max-age")
_TRUE = ("1", "true", "yes", "on")
_COPY_CHUNK = 1 * MiB
#: bytes per ranged read when a copy streams through the client (v2)
_COPY_RANGE = 8 * MiB
#: entries per listing request (Manta's maximum)
PAGE = 1024
MAX_PARTS = 800
#: part sizes for the one-PUT stream: pieces the stream is fed in, as small as keeps the
#: close short (only the last piece is left to send then); the count only bounds numbering
_STREAM_PARTS: dict[str, Any] = {
    "multipart_threshold": 8 * MiB, "min_part_size": 1 * MiB, "max_part_size": 5 * GiB,
    "max_parts": 1_000_000, "part_size": 8 * MiB, "sequential_parts": True,
}
#: ``Max-Content-Length`` of a chunked stream: Manta's own default, said out loud (a larger
#: value makes Manta look for storage nodes with that much room)
STREAM_CAP = 5 * GiB
#: 800 parts of 64 MiB: 50 GiB files before write-back must grow the part size
_MULTIPART_PARTS: dict[str, Any] = {
    "multipart_threshold": 64 * MiB, "min_part_size": 5 * MiB, "max_part_size": 5 * GiB,
    "max_parts": MAX_PARTS, "part_size": 64 * MiB, "sequential_parts": False,
}


async def _no_bytes() -> bytes:
    return b""


class _Body(httpx.AsyncByteStream, AsyncIterator[bytes]):
    """A request body pulled piece by piece from ``read`` (``b""`` ends it).

    An iterator object, not an async generator: httpx wraps ``content=`` iterables in a
    generator of its own, and a generator left unfinished (the server answered before the
    body was sent, e.g. ``DirectoryDoesNotExist``) is reported by trio when collected.
    ``length`` None sends it chunked.
    """

    def __init__(self, read: Callable[[], Awaitable[bytes]], length: int | None) -> None:
        self._read = read
        self.length = length
        #: bytes handed to httpx so far
        self.sent = 0

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        piece = await self._read()
        if not piece:
            raise StopAsyncIteration
        self.sent += len(piece)
        return piece

    def release(self) -> None:
        """Drop the source now: httpx's request/response reference cycles would keep a
        64 MiB part alive until the next garbage collection."""
        self._read = _no_bytes

    @classmethod
    def of(cls, data: bytes) -> _Body:
        """``data`` in 1 MiB views: httpx sends a large ``bytes`` body by slicing (copying)
        what is left after every ``send``, which halves throughput for 64 MiB parts."""
        view = memoryview(data)
        offset = 0

        async def read() -> bytes:
            nonlocal offset
            piece = view[offset:offset + _COPY_CHUNK]
            offset += len(piece)
            # h11 and the socket take any buffer; the annotations say bytes
            return cast(bytes, piece)

        return cls(read, len(data))

    @classmethod
    def empty(cls) -> _Body:
        return cls(_no_bytes, None)


def _b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _http_time(value: str | None) -> float:
    if not value:
        return time.time()
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return time.time()


def _iso_time(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _unquote_etag(etag: str) -> str:
    # muskie compares etags unquoted: a quoted UUID never matches (§4.6)
    return etag.strip().strip('"')


def _dir_key(key: str) -> str:
    return key if not key or key.endswith("/") else key + "/"


def _user_metadata(headers: httpx.Headers) -> dict[str, str]:
    return {k.lower()[2:]: v for k, v in headers.items() if k.lower().startswith("m-")}


@dataclass
class Settings:
    """Everything ``open_backend`` gathered; no network, no key loaded yet."""

    url: str
    #: the account whose tree is mounted (first path element)
    login: str
    #: the mounted directory, e.g. ``/jill/stor/photos`` (decoded)
    base: str
    #: the account that signs (MANTA_USER)
    user: str
    key_id: str | None = None
    key_file: str | None = None
    subuser: str | None = None
    role: str | None = None
    tls_insecure: bool = False
    anonymous: bool = False
    connections: int = 16
    timeout: float = 60.0
    #: "stream" or "multipart" (see ``begin_upload`` in the module docstring)
    uploads: str = "stream"
    ssh_dir: Path = field(default_factory=lambda: Path.home() / ".ssh")

    @property
    def who(self) -> str:
        return f"{self.user}/{self.subuser}" if self.subuser else self.user


class MantaBackend(Backend):
    """The Manta backend; see the module docstring for what maps to what."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 key: SigningKey | None = None, page_size: int = PAGE) -> None:
        """``clock`` is what the Date header is made from (tests skew it); ``key`` an
        already-loaded key; ``page_size`` the default listing page (tests make it small
        so paging is exercised)."""
        self.settings = settings
        self.clock = clock
        self.key = key
        self.client: httpx.AsyncClient | None = None
        #: the one-PUT streams' own pool: a stream holds its connection for as long as its
        #: file is being written, so streams must not starve (or wait on) other requests
        self.stream_client: httpx.AsyncClient | None = None
        self.auth: MantaAuth | None = None
        # SnapLinks are assumed until the server says otherwise (v2), then never tried again
        self.snaplinks = True
        self.server_version: str | None = None
        self._sizes: LRUCache[str, tuple[str, int]] = LRUCache(maxsize=10_000)
        self._limiter = trio.CapacityLimiter(max(1, settings.connections))
        self.requests: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.bytes_in = 0
        self.bytes_out = 0
        self.capabilities = Capabilities(
            name="manta",
            real_directories=True,
            # v1 copies/renames with SnapLinks; on v2 they fall back to GET + PUT
            server_side_copy=True,
            cheap_rename=True,
            metadata_update=True,
            conditional_put=True,
            conditional_get=True,
            **(_STREAM_PARTS if self._streams() else _MULTIPART_PARTS),
            # 4 KiB on the wire, less the "m-" of each header name
            max_metadata_size=M_HEADER_LIMIT - 196,
            dir_rename=False,
            max_key_length=1024,
            ordered_listing=False,
            read_only=settings.anonymous,
            list_page_size=min(PAGE, max(1, page_size)),
            metadata_style="s3fs",
        )

    def _streams(self) -> bool:
        """Large files go up as one streaming PUT (sub-users may not use multipart)."""
        return self.settings.uploads == "stream" or bool(self.settings.subuser)

    def describe(self) -> str:
        s = self.settings
        who = "anonymous" if s.anonymous else s.who
        return f"manta {s.url}{s.base} as {who}"

    # -- connection ---------------------------------------------------------------------

    def _ensure_client(self, stream: bool = False) -> httpx.AsyncClient:
        """The pool for ordinary requests; ``stream``: the unbounded pool of streams."""
        if self.client is not None:
            if stream:
                if self.stream_client is None:
                    self.stream_client = self._new_client(None, 4)
                return self.stream_client
            return self.client
        s = self.settings
        auth: MantaAuth | None = None
        if not s.anonymous:
            if self.key is None:
                self.key = find_key(s.key_id, s.key_file, s.ssh_dir)
            auth = MantaAuth(self.key, Principal(s.user, s.subuser, s.role), self.clock)
            log.debug("manta: signing as %s with key %s from %s", s.who, self.key.md5,
                      self.key.source)
        self.auth = auth
        n = max(2, s.connections)
        self.client = self._new_client(n, n)
        return self._ensure_client(stream)

    def _new_client(self, connections: int | None, keepalive: int) -> httpx.AsyncClient:
        s = self.settings
        use_large_reads()
        return httpx.AsyncClient(
            base_url=s.url,
            auth=self.auth,
            verify=not s.tls_insecure,
            timeout=httpx.Timeout(s.timeout, connect=min(s.timeout, 15.0)),
            limits=httpx.Limits(max_connections=connections,
                                max_keepalive_connections=keepalive, keepalive_expiry=60.0),
            headers={"Accept": "*/*", "User-Agent": "storefs"},
            follow_redirects=False,
        )

    async def connect(self) -> None:
        """Load the key and make one signed request to the mounted directory, so wrong
        credentials, a missing directory or an unreachable endpoint fail before mounting."""
        client = self._ensure_client()
        s = self.settings
        try:
            async with client.stream("GET", self._url(""), params={"limit": "1"}) as resp:
                self.server_version = resp.headers.get("server")
                if resp.status_code >= 400:
                    await resp.aread()
                    raise self._connect_error(resp)
                if "type=directory" not in resp.headers.get("content-type", ""):
                    raise NotADirectory(f"manta: {s.base} is an object, not a directory")
        except httpx.ConnectError as exc:
            raise self._unreachable(exc) from exc
        except httpx.TimeoutException as exc:
            raise ConnectError(f"manta: {s.url} did not answer within {s.timeout:.0f}s") \
                from exc
        except httpx.TransportError as exc:
            raise ConnectError(f"manta: cannot talk to {s.url}: {exc}") from exc
        if self.server_version == "Manta/2":
            # v2 has no SnapLinks (§4.7): copy and rename stream the bytes
            self.snaplinks = False
        log.info("manta: connected to %s (%s) as %s", s.url, self.server_version,
                 "anonymous" if s.anonymous else s.who)

    def _unreachable(self, exc: httpx.ConnectError) -> ConnectError:
        s = self.settings
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, ssl.SSLError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or "not trusted"
            return ConnectError(f"manta: the TLS certificate of {s.url} is not trusted "
                                f"({reason}); fix the CA bundle, or set MANTA_TLS_INSECURE=1 "
                                "for a test server")
        if cause is not None:
            return ConnectError(f"manta: TLS handshake with {s.url} failed: "
                                f"{getattr(cause, 'reason', None) or cause}")
        text = str(exc) or str(exc.__cause__ or "") or type(exc).__name__
        return ConnectError(f"manta: cannot reach {s.url}: {text}")

    def _connect_error(self, resp: httpx.Response) -> StorefsError:
        s = self.settings
        code, message = self._error_body(resp)
        md5 = self.key.md5 if self.key is not None else "?"
        if code == "KeyDoesNotExist":
            return AuthError(f"manta: key {md5} is not registered for user {s.who} "
                             "(KeyDoesNotExist)")
        if code == "AccountDoesNotExist":
            return AuthError(f"manta: user {s.user} does not exist at {s.url} "
                             "(AccountDoesNotExist)")
        if code == "UserDoesNotExist":
            return AuthError(f"manta: sub-user {s.subuser} does not exist in account "
                             f"{s.user} (UserDoesNotExist)")
        if code == "InvalidSignature":
            return AuthError(f"manta: the server rejected the signature of key {md5} for user "
                             f"{s.who}: the private key does not match the registered public "
                             "key (InvalidSignature)")
        if code == "InvalidRole":
            return AuthError(f"manta: role {s.role} is not a role of {s.who} (InvalidRole)")
        if code in ("RequestExpired", "InvalidHeader"):
            skew = self.clock() - _http_time(resp.headers.get("date"))
            if code == "RequestExpired" or "skew" in message or abs(skew) > 240:
                side = "ahead of" if skew > 0 else "behind"
                return AuthError(f"manta: this machine's clock is {abs(skew):.0f}s {side} "
                                 f"the server's (Manta allows 300s); fix the clock, e.g. with "
                                 f"NTP ({code})")
        if code == "AuthorizationFailed":
            who = "anonymous" if s.anonymous else s.who
            return AuthError(f"manta: {who} may not read {s.base} (AuthorizationFailed)")
        if resp.status_code == 404:
            return NotFound(f"manta: {s.base} does not exist")
        return error_for(resp.status_code, code, message, f"GET {s.base}")

    async def aclose(self) -> None:
        for client in (self.client, self.stream_client):
            if client is not None:
                await client.aclose()
        self.client = self.stream_client = None
        if self.key is not None:
            self.key.close()

    # -- requests -----------------------------------------------------------------------

    def _path(self, key: str) -> str:
        """The decoded Manta path of ``key``."""
        key = key.strip("/")
        return f"{self.settings.base}/{key}" if key else self.settings.base

    def _url(self, key: str, path: str | None = None) -> str:
        raw = self._path(key) if path is None else path
        # each segment percent-encoded (node-manta's encodeURIComponent); never %2F inside
        return "/".join(urllib.parse.quote(seg, safe="") for seg in raw.split("/"))

    @staticmethod
    def _error_body(resp: httpx.Response) -> tuple[str | None, str]:
        try:
            body = json.loads(resp.content or b"{}")
        except (ValueError, httpx.ResponseNotRead):
            return None, ""
        if not isinstance(body, dict):
            return None, ""
        return body.get("code"), str(body.get("message") or "")

    def _count(self, op: str) -> None:
        self.requests[op] = self.requests.get(op, 0) + 1

    def _fail(self, resp: httpx.Response, what: str) -> StorefsError:
        code, message = self._error_body(resp)
        self.errors[code or str(resp.status_code)] = \
            self.errors.get(code or str(resp.status_code), 0) + 1
        return error_for(resp.status_code, code, message, what)

    def _transport(self, exc: httpx.HTTPError, what: str) -> TransientError:
        self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
        return TransientError(f"manta: {what}: {type(exc).__name__}: {exc or 'no detail'}")

    async def _request(self, method: str, key: str, *, what: str, path: str | None = None,
                       headers: Mapping[str, str] | None = None,
                       params: Mapping[str, str] | None = None,
                       content: bytes | _Body | None = None,
                       json_body: Any = None, ok: Iterable[int] = (),
                       stream: bool = False) -> httpx.Response:
        """One request whose reply body is small; raises the translated error unless the
        status is < 400 or in ``ok``.  ``stream``: a one-PUT stream (its own pool)."""
        client = self._ensure_client(stream)
        self._count(method)
        try:
            if isinstance(content, _Body):
                request = client.build_request(method, self._url(key, path), headers=headers,
                                               params=params)
                request.stream = content
                if content.length is None:
                    del request.headers["Content-Length"]
                    request.headers["Transfer-Encoding"] = "chunked"
                else:
                    request.headers["Content-Length"] = str(content.length)
                try:
                    resp = await client.send(request)
                finally:
                    content.release()
            else:
                resp = await client.request(method, self._url(key, path), headers=headers,
                                            params=params, content=content, json=json_body)
        except httpx.HTTPError as exc:
            raise self._transport(exc, what) from exc
        if resp.status_code >= 400 and resp.status_code not in ok:
            raise self._fail(resp, what)
        return resp

    @contextlib.asynccontextmanager
    async def _stream(self, method: str, key: str, *, what: str,
                      headers: Mapping[str, str] | None = None,
                      params: Mapping[str, str] | None = None,
                      ok: Iterable[int] = ()) -> AsyncIterator[httpx.Response]:
        """A request whose body the caller reads (and may stop reading early)."""
        client = self._ensure_client()
        self._count(method)
        try:
            async with client.stream(method, self._url(key), headers=headers,
                                     params=params) as resp:
                if resp.status_code >= 400 and resp.status_code not in ok:
                    await resp.aread()
                    raise self._fail(resp, what)
                yield resp
        except httpx.HTTPError as exc:
            raise self._transport(exc, what) from exc

    def _meta_headers(self, key: str, metadata: Metadata) -> dict[str, str]:
        out: dict[str, str] = {}
        used = 0
        for k, v in metadata.items():
            name = f"m-{k.lower()}"
            if not k or any(c in k for c in " :\r\n") or any(c in v for c in "\r\n") \
                    or not (name + v).isascii():
                raise InvalidName(f"manta: {key}: metadata {k!r} is not a valid header")
            used += len(name) + len(v)
            out[name] = v
        if used > M_HEADER_LIMIT:
            raise TooLarge(f"manta: {key}: user metadata is {used} bytes; Manta keeps at most "
                           f"{M_HEADER_LIMIT}")
        return out

    def _object_meta(self, key: str, headers: httpx.Headers, *, size: int | None = None,
                     metadata: Metadata | None = None) -> ObjectMeta:
        etag = ETag(_unquote_etag(headers.get("etag", "")))
        length = size if size is not None else int(headers.get("content-length", "0"))
        md5 = headers.get("content-md5") or headers.get("computed-md5")
        meta = ObjectMeta(
            key=key, size=length, etag=etag, mtime=_http_time(headers.get("last-modified")),
            content_type=headers.get("content-type"),
            metadata=dict(metadata) if metadata is not None else _user_metadata(headers),
            checksums={"md5": md5} if md5 else {},
        )
        self._sizes[key] = (etag, length)
        return meta

    # -- reads --------------------------------------------------------------------------

    async def _head_raw(self, key: str) -> httpx.Response:
        return await self._request("HEAD", key, what=f"head {self._path(key)}")

    async def head(self, key: str) -> ObjectMeta:
        resp = await self._head_raw(key)
        return self._meta_from_head(key, resp)

    def _meta_from_head(self, key: str, resp: httpx.Response) -> ObjectMeta:
        ctype = resp.headers.get("content-type", "")
        if "type=directory" in ctype:
            return ObjectMeta(key=_dir_key(key), size=0, etag=ETag(""),
                              mtime=_http_time(resp.headers.get("last-modified")), is_dir=True,
                              content_type=ctype, metadata=_user_metadata(resp.headers))
        if key.endswith("/"):
            raise NotFound(f"manta: {self._path(key)} is an object, not a directory")
        return self._object_meta(key, resp.headers)

    async def _list_dir(self, dir_key: str, marker: str | None,
                        limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """Entries of one directory after ``marker`` (exclusive), and the next marker."""
        ask = min(limit + (1 if marker is not None else 0), PAGE)
        params = {"limit": str(ask)}
        if marker is not None:
            params["marker"] = marker
        path = self._path(dir_key)
        async with self._stream("GET", dir_key, what=f"list {path}", params=params,
                                ok=(404,)) as resp:
            if resp.status_code == 404:
                return [], None
            if "type=directory" not in resp.headers.get("content-type", ""):
                # an object: its bytes are not a listing (leaving unread closes the stream)
                return [], None
            body = await resp.aread()
        self.bytes_in += len(body)
        rows = [json.loads(line) for line in body.splitlines() if line.strip()]
        got = len(rows)
        if marker is not None and rows and rows[0].get("name") == marker:
            rows = rows[1:]
        rows = rows[:limit]
        more = got >= ask and bool(rows)
        return rows, (rows[-1]["name"] if more else None)

    def _row_meta(self, dir_key: str, row: dict[str, Any]) -> ObjectMeta:
        key = dir_key + row["name"]
        mtime = _iso_time(row.get("mtime"))
        if row.get("type") == "directory":
            return ObjectMeta(key=key + "/", size=0, etag=ETag(""), mtime=mtime, is_dir=True,
                              metadata_complete=False)
        etag = ETag(str(row.get("etag", "")))
        size = int(row.get("size", 0))
        self._sizes[key] = (etag, size)
        md5 = row.get("contentMD5")
        return ObjectMeta(key=key, size=size, etag=etag, mtime=mtime,
                          content_type=row.get("contentType"),
                          checksums={"md5": md5} if md5 else {}, metadata_complete=False)

    async def list_page(
        self, prefix: str, *, delimiter: str = "/", token: str | None = None, limit: int = 0
    ) -> ListPage:
        limit = max(1, limit or self.capabilities.list_page_size)
        if prefix and not prefix.endswith("/"):
            raise ConfigError(f"manta: listing prefix {prefix!r} must end in '/'")
        if delimiter == "/":
            rows, marker = await self._list_dir(prefix, token, limit)
            return ListPage([self._row_meta(prefix, r) for r in rows], [], marker)
        if delimiter:
            raise Unsupported(f"manta: listings delimited by {delimiter!r}")
        return await self._walk(prefix, token, limit)

    async def _walk(self, prefix: str, token: str | None, limit: int) -> ListPage:
        # depth-first; the token is the stack of (directory key, last name listed there)
        stack: list[list[str | None]] = json.loads(token) if token else [[prefix, None]]
        out: list[ObjectMeta] = []
        while stack and len(out) < limit:
            top = stack[-1]
            dir_key = str(top[0])
            rows, more = await self._list_dir(dir_key, top[1], limit - len(out))
            if not rows:
                stack.pop()
                continue
            descended = False
            for row in rows:
                meta = self._row_meta(dir_key, row)
                out.append(meta)
                top[1] = row["name"]
                if meta.is_dir:
                    stack.append([meta.key, None])
                    descended = True
                    break
            if not descended and more is None:
                stack.pop()
        return ListPage(out, [], json.dumps(stack) if stack else None)

    async def get_range(
        self, key: str, start: int, end: int, *, if_match: ETag | None = None
    ) -> bytes:
        path = self._path(key)
        if end <= start:
            meta = await self.head(key)
            if if_match is not None and meta.etag != if_match:
                raise PreconditionFailed(f"manta: {path} changed (etag {meta.etag})")
            return b""
        headers: dict[str, str] = {}
        if if_match is not None:
            headers["If-Match"] = _unquote_etag(if_match)
        hint = self._sizes.get(key)
        whole = start == 0 and hint is not None and hint[1] <= end and \
            (if_match is None or hint[0] == if_match)
        if not whole:
            headers["Range"] = f"bytes={start}-{end - 1}"
        want = end - start
        async with self._stream("GET", key, what=f"get {path}", headers=headers,
                                ok=(416,)) as resp:
            if resp.status_code == 416:
                return b""
            if "type=directory" in resp.headers.get("content-type", ""):
                raise IsADirectory(f"manta: {path} is a directory")
            pieces: list[bytes] = []
            have = 0
            skip = start if resp.status_code == 200 else 0
            received = 0
            # read to the end even past ``want`` (only when the object grew since its size
            # was seen): a stream left half-read leaks httpcore's generators
            async for chunk in resp.aiter_raw():
                received += len(chunk)
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                if have < want and chunk:
                    piece = chunk[:want - have]
                    pieces.append(piece)
                    have += len(piece)
        data = b"".join(pieces)
        self.bytes_in += received
        self._check_read(resp, path, start, end, data)
        return data

    def _check_read(self, resp: httpx.Response, path: str, start: int, end: int,
                    data: bytes) -> None:
        """A short body is a broken transfer (retry); a whole object must match its MD5."""
        if resp.status_code == 206:
            crange = resp.headers.get("content-range", "")
            try:
                total = int(crange.rsplit("/", 1)[1])
            except (IndexError, ValueError):
                total = end
            expected = min(end, total) - start
            if len(data) < expected:
                raise TransientError(f"manta: get {path}: {len(data)} of {expected} bytes "
                                     "arrived")
            return
        size = int(resp.headers.get("content-length", "-1"))
        if size < 0 or size > end:
            return  # more than asked for: cut off, nothing to check
        if len(data) + start < size:
            raise TransientError(f"manta: get {path}: {len(data)} of {size} bytes arrived")
        md5 = resp.headers.get("content-md5")
        if start == 0 and md5 and _b64md5(data) != md5:
            raise IntegrityError(f"manta: get {path}: the bytes do not match their MD5 {md5}")

    # -- writes -------------------------------------------------------------------------

    async def _put_object(self, key: str, content: bytes | _Body, length: int | None,
                          md5: str | None, metadata: Metadata, content_type: str | None,
                          if_match: ETag | None, if_none_match: bool,
                          stream: bool = False) -> ObjectMeta:
        """``PUT`` of ``content``; ``length`` None streams it chunked (up to ``STREAM_CAP``),
        ``md5`` None sends no Content-MD5 (the caller checks ``checksums["md5"]``, the
        server's Computed-MD5)."""
        path = self._path(key)
        headers = self._meta_headers(key, metadata)
        headers["Content-Type"] = content_type or "application/octet-stream"
        if md5 is not None:
            headers["Content-MD5"] = md5
        if length is not None:
            headers["Content-Length"] = str(length)
        else:
            headers["Max-Content-Length"] = str(STREAM_CAP)
        if if_match is not None:
            headers["If-Match"] = _unquote_etag(if_match)
        if if_none_match:
            # Manta has no create-exclusive: HEAD, then a write conditional on the
            # absence seen at request start (If-None-Match: * would always fail, §4.6)
            with contextlib.suppress(NotFound):
                await self.head(key)
                raise AlreadyExists(f"manta: {path} already exists")
            headers["If-None-Match"] = str(uuid.uuid4())
        try:
            resp = await self._request("PUT", key, what=f"put {path}", headers=headers,
                                       content=content, stream=stream)
        except PreconditionFailed as exc:
            if if_none_match:
                raise AlreadyExists(f"manta: {path} was created by another writer") from exc
            raise
        computed = resp.headers.get("computed-md5")
        if md5 is not None and computed is not None and computed != md5:
            raise IntegrityError(f"manta: put {path}: the server received bytes with MD5 "
                                 f"{computed}, not {md5}")
        size = content.sent if isinstance(content, _Body) else len(content)
        self.bytes_out += size
        checksum = md5 or computed
        return ObjectMeta(key=key, size=size, etag=self._remember(key, resp, size),
                          mtime=_http_time(resp.headers.get("last-modified")),
                          content_type=content_type or "application/octet-stream",
                          metadata=dict(metadata),
                          checksums={"md5": checksum} if checksum else {})

    def _remember(self, key: str, resp: httpx.Response, size: int) -> ETag:
        etag = ETag(_unquote_etag(resp.headers.get("etag", "")))
        self._sizes[key] = (etag, size)
        return etag

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
        data = bytes(data)
        body: bytes | _Body = data if len(data) <= _COPY_CHUNK else _Body.of(data)
        return await self._put_object(key, body, len(data), _b64md5(data), metadata,
                                      content_type, if_match, if_none_match)

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
            raise ConfigError(f"manta: part size {part_size} is below the "
                              f"{self.capabilities.min_part_size} bytes minimum")
        conditions = (if_match, if_none_match)
        if self._streams():
            return MantaStream(self, key, metadata, content_type, conditions, size)
        headers: dict[str, Any] = self._meta_headers(key, metadata)
        headers["content-type"] = content_type or "application/octet-stream"
        path = self._path(key)
        resp = await self._request(
            "POST", "", path=f"/{self.settings.login}/uploads", what=f"begin upload {path}",
            json_body={"objectPath": path, "headers": headers},
        )
        body = resp.json()
        return MantaUpload(self, key, str(body["id"]), str(body["partsDirectory"]), metadata,
                           content_type, conditions)

    async def check_conditions(self, key: str, if_match: ETag | None,
                               if_none_match: bool) -> None:
        """``HEAD`` the target: raises ``AlreadyExists`` / ``PreconditionFailed``."""
        if if_match is None and not if_none_match:
            return
        try:
            meta = await self.head(key)
        except NotFound:
            if if_match is not None:
                raise PreconditionFailed(f"manta: {self._path(key)} is gone") from None
            return
        if if_none_match:
            raise AlreadyExists(f"manta: {self._path(key)} already exists")
        if meta.etag != if_match:
            raise PreconditionFailed(f"manta: {self._path(key)} changed (etag {meta.etag})")

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await self._request("DELETE", key, what=f"delete {path}", ok=(404,))
        self._sizes.pop(key, None)

    async def delete_many(self, keys: Iterable[str]) -> None:
        async with fan_out() as nursery:
            for key in keys:
                nursery.start_soon(self._delete_limited, key)

    async def _delete_limited(self, key: str) -> None:
        async with self._limiter:
            await self.delete(key)

    async def copy(
        self,
        src: str,
        dst: str,
        *,
        metadata: Metadata | None = None,
        if_match: ETag | None = None,
    ) -> ObjectMeta:
        if self.snaplinks:
            try:
                meta = await self._link(src, dst, if_match)
            except Unsupported as exc:
                if "SnaplinksDisabledError" not in str(exc):
                    raise
                log.info("manta: SnapLinks are disabled here; copies stream the bytes")
                self.snaplinks = False
            else:
                if metadata is not None:
                    meta = await self.set_metadata(dst, metadata)
                return meta
        return await self._stream_copy(src, dst, metadata, if_match)

    async def _link(self, src: str, dst: str, if_match: ETag | None) -> ObjectMeta:
        source = await self.head(src)
        if source.is_dir:
            raise IsADirectory(f"manta: {self._path(src)} is a directory")
        if if_match is not None and source.etag != if_match:
            raise PreconditionFailed(f"manta: {self._path(src)} changed (etag {source.etag})")
        resp = await self._request(
            "PUT", dst, what=f"link {self._path(dst)} -> {self._path(src)}",
            headers={"Content-Type": LINK_CONTENT_TYPE, "Location": self._url(src)},
            content=b"")
        etag = ETag(_unquote_etag(resp.headers.get("etag", "")))
        if if_match is not None and etag != if_match:
            raise PreconditionFailed(f"manta: {self._path(src)} changed while being linked")
        self._sizes[dst] = (etag, source.size)
        # a SnapLink shares the source's bytes, etag and headers, with its own mtime
        return ObjectMeta(key=dst, size=source.size, etag=etag, mtime=self.clock(),
                          content_type=source.content_type, metadata=dict(source.metadata),
                          checksums=dict(source.checksums))

    async def _stream_copy(self, src: str, dst: str, metadata: Metadata | None,
                           if_match: ETag | None) -> ObjectMeta:
        # the bytes pass through in ranged reads pinned to the source's etag, each read
        # whole, so a source replaced mid-copy fails the copy instead of mixing versions
        source = await self.head(src)
        if source.is_dir:
            raise IsADirectory(f"manta: {self._path(src)} is a directory")
        if if_match is not None and source.etag != if_match:
            raise PreconditionFailed(f"manta: {self._path(src)} changed (etag {source.etag})")
        offset = 0

        async def read() -> bytes:
            nonlocal offset
            if offset >= source.size:
                return b""
            piece = await self.get_range(src, offset, min(source.size, offset + _COPY_RANGE),
                                         if_match=source.etag)
            if not piece:
                raise TransientError(f"manta: copy {self._path(src)}: source ended early")
            offset += len(piece)
            return piece

        md5 = source.checksums.get("md5") or ""
        meta = dict(source.metadata) if metadata is None else dict(metadata)
        return await self._put_object(dst, _Body(read, source.size), source.size, md5, meta,
                                      source.content_type, None, False)

    async def rename(self, src: str, dst: str) -> ObjectMeta:
        if src.endswith("/"):
            raise IsADirectory(f"manta: {self._path(src)}: directories are renamed entry by "
                               "entry")
        meta = await self.copy(src, dst)
        await self.delete(src)
        return meta

    async def make_dir(self, key: str, metadata: Metadata) -> ObjectMeta:
        path = self._path(key)
        # PutDirectory is create-or-update and replaces an object silently (§3.1)
        with contextlib.suppress(NotFound):
            await self._head_raw(key)
            raise AlreadyExists(f"manta: {path} already exists")
        headers = self._meta_headers(key, metadata)
        headers["Content-Type"] = DIR_CONTENT_TYPE
        await self._request("PUT", key, what=f"mkdir {path}", headers=headers, content=b"")
        return ObjectMeta(key=_dir_key(key), size=0, etag=ETag(""), mtime=self.clock(),
                          is_dir=True, content_type=DIR_CONTENT_TYPE, metadata=dict(metadata))

    async def remove_dir(self, key: str) -> None:
        path = self._path(key)
        # directories ignore conditional headers and objects honour them (§4.6): a random
        # If-Match deletes an empty directory but never a file
        try:
            await self._request("DELETE", key, what=f"rmdir {path}",
                                headers={"If-Match": str(uuid.uuid4())}, ok=(404,))
        except PreconditionFailed:
            meta = await self.head(key.rstrip("/"))
            if not meta.is_dir:
                raise NotADirectory(f"manta: {path} is not a directory") from None
            await self._request("DELETE", key, what=f"rmdir {path}", ok=(404,))

    async def set_metadata(
        self, key: str, metadata: Metadata, *, if_match: ETag | None = None
    ) -> ObjectMeta:
        path = self._path(key)
        current = await self._head_raw(key.rstrip("/") if key.endswith("/") else key)
        before = self._meta_from_head(key, current)
        if if_match is not None and not before.is_dir and before.etag != if_match:
            raise PreconditionFailed(f"manta: {path} changed (etag {before.etag})")
        headers = self._meta_headers(key, metadata)
        # a metadata update replaces every stored header (§4.2): send the others again
        for name in _KEPT_HEADERS:
            if name in current.headers:
                headers[name] = current.headers[name]
        if if_match is not None and not before.is_dir:
            headers["If-Match"] = _unquote_etag(if_match)

        resp = await self._request("PUT", key, what=f"set metadata {path}", headers=headers,
                                   params={"metadata": "true"},
                                   # chunked with no bytes: Manta refuses any Content-Length
                                   content=_Body.empty())
        mtime = _http_time(resp.headers.get("last-modified"))
        return ObjectMeta(key=before.key, size=before.size, etag=before.etag, mtime=mtime,
                          is_dir=before.is_dir, content_type=before.content_type,
                          metadata=dict(metadata), checksums=dict(before.checksums))

    def check_name(self, key: str) -> None:
        super().check_name(key)
        for part in key.rstrip("/").split("/"):
            if part in (".", ".."):
                raise InvalidName(f"manta: {key}: '{part}' is not a valid name")

    def statistics(self) -> dict[str, Any]:
        return {"requests": dict(self.requests), "errors": dict(self.errors),
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "signatures": self.auth.signatures if self.auth else 0,
                "snaplinks": self.snaplinks, "server": self.server_version}


class MantaUpload(Upload):
    """A Manta multipart upload: part ``n`` is ``{partsDirectory}/{n-1}`` on the wire."""

    def __init__(self, backend: MantaBackend, key: str, upload_id: str, parts_dir: str,
                 metadata: Metadata, content_type: str | None,
                 conditions: tuple[ETag | None, bool]) -> None:
        self.backend = backend
        self.key = key
        self.upload_id = upload_id
        self.parts_dir = parts_dir
        self.metadata = dict(metadata)
        self.content_type = content_type
        self.conditions = conditions
        self.etags: dict[int, str] = {}
        self.sizes: dict[int, int] = {}

    async def write_part(self, number: int, data: bytes) -> None:
        if not 1 <= number <= MAX_PARTS:
            raise TooLarge(f"manta: {self.key}: part {number} is beyond Manta's {MAX_PARTS} "
                           "parts")
        b = self.backend
        # 64 MiB hash off the trio thread (hashlib drops the GIL): FUSE requests go on
        md5 = await trio.to_thread.run_sync(_b64md5, data)
        resp = await b._request("PUT", "", path=f"{self.parts_dir}/{number - 1}",
                                what=f"upload {b._path(self.key)} part {number}",
                                headers={"Content-MD5": md5,
                                         "Content-Type": "application/octet-stream",
                                         "Content-Length": str(len(data))},
                                content=_Body.of(bytes(data)))
        b.bytes_out += len(data)
        computed = resp.headers.get("computed-md5")
        if computed is not None and computed != md5:
            raise IntegrityError(f"manta: upload {b._path(self.key)} part {number}: the server "
                                 f"received bytes with MD5 {computed}, not {md5}")
        self.etags[number] = _unquote_etag(resp.headers.get("etag", ""))
        self.sizes[number] = len(data)

    async def complete(self) -> ObjectMeta:
        b = self.backend
        path = b._path(self.key)
        numbers = sorted(self.etags)
        if not numbers or numbers != list(range(1, len(numbers) + 1)):
            raise ConfigError(f"manta: {path}: upload is missing parts (have {numbers})")
        await b.check_conditions(self.key, *self.conditions)
        resp = await b._request("POST", "", path=f"{self.parts_dir}/commit",
                                what=f"commit upload {path}",
                                json_body={"parts": [self.etags[n] for n in numbers]})
        size = sum(self.sizes.values())
        md5 = resp.headers.get("computed-md5")
        return ObjectMeta(key=self.key, size=size, etag=b._remember(self.key, resp, size),
                          mtime=_http_time(resp.headers.get("last-modified")),
                          content_type=self.content_type or "application/octet-stream",
                          metadata=self.metadata, checksums={"md5": md5} if md5 else {})

    async def abort(self) -> None:
        b = self.backend
        try:
            await b._request("POST", "", path=f"{self.parts_dir}/abort",
                             what=f"abort upload {b._path(self.key)}", ok=(404,))
        except ConfigError as exc:
            # InvalidMultipartUploadState: already committed; nothing left to discard
            log.debug("manta: abort %s: %s", self.key, exc)


class MantaStream(Upload):
    """One ``PUT`` fed part by part (``capabilities.sequential_parts``); see ``begin_upload``
    in the module docstring.

    The request runs in a task of its own from the first part to ``complete``; parts reach
    its body through an unbuffered channel, so memory holds the part being sent and nothing
    more, and ``write_part`` returns once httpx has taken the last of it.  ``size`` known:
    ``Content-Length``; unknown: chunked, which Manta caps at 5 GiB (a longer stream fails
    with ``TooLarge`` and write-back sends the file again at close, with its size).
    """

    def __init__(self, backend: MantaBackend, key: str, metadata: Metadata,
                 content_type: str | None, conditions: tuple[ETag | None, bool],
                 size: int | None) -> None:
        self.backend = backend
        self.key = key
        self.metadata = dict(metadata)
        self.content_type = content_type
        self.conditions = conditions
        self.size = size
        self._send, self._receive = trio.open_memory_channel[memoryview](0)
        self._md5 = hashlib.md5()
        self._next = 1
        self._scope = trio.CancelScope()
        self._started = False
        self._done = trio.Event()
        self._meta: ObjectMeta | None = None
        self._error: BaseException | None = None
        #: the last piece given, sent only by the next part or by ``complete`` after the
        #: conditions were checked again: Manta checks If-Match when the request starts,
        #: minutes before a long stream ends, and must not commit before that second check
        self._held: memoryview | None = None
        #: a part failed or was cancelled half-sent: the stream cannot go on
        self._unusable = False

    def _start(self) -> None:
        if not self._started:
            self._started = True
            trio.lowlevel.spawn_system_task(self._run, name=f"manta stream {self.key}")

    async def _run(self) -> None:
        async def read() -> bytes:
            try:
                # h11 and the socket take any buffer; the annotations say bytes
                return cast(bytes, await self._receive.receive())
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return b""

        if_match, if_none_match = self.conditions
        try:
            with self._scope:
                self._meta = await self.backend._put_object(
                    self.key, _Body(read, self.size), self.size, None, self.metadata,
                    self.content_type, if_match, if_none_match, stream=True)
            if self._scope.cancelled_caught:
                self._error = UploadInterrupted(
                    f"manta: upload {self.backend._path(self.key)}: aborted")
        except Exception as exc:  # kept for write_part / complete to raise
            self._error = exc
        finally:
            # a writer blocked on a body the request no longer reads gets the error now
            self._receive.close()
            self._done.set()

    def _broken(self) -> StorefsError:
        err = self._error
        path = self.backend._path(self.key)
        if err is None:
            return UploadInterrupted(f"manta: upload {path}: the request ended early")
        if isinstance(err, TransientError) or (isinstance(err, TooLarge) and self.size is None):
            # a chunked stream past Manta's 5 GiB cap goes again, with its Content-Length
            return UploadInterrupted(f"manta: upload {path} broke: {err}")
        return err if isinstance(err, StorefsError) else StorefsError(f"manta: {err}")

    def _refuse_if_unusable(self) -> None:
        if self._unusable:
            raise UploadInterrupted(f"manta: upload {self.backend._path(self.key)}: a part "
                                    "was not sent whole; the upload must start over")

    async def _push(self, piece: memoryview | None) -> bool:
        """Hand ``piece`` to the request, holding it back until the next one (None: send
        what is held); False when the request is gone."""
        held, self._held = self._held, piece
        if held is None:
            return True
        try:
            await self._send.send(held)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def write_part(self, number: int, data: bytes) -> None:
        self._refuse_if_unusable()
        if number != self._next:
            raise ConfigError(f"manta: {self.key}: part {number} out of order "
                              f"(expected {self._next})")
        self._start()
        view = memoryview(data)
        sent = False
        try:
            async with trio.open_nursery() as nursery:
                # the MD5 of this part is taken (off the trio thread) while it is sent
                nursery.start_soon(trio.to_thread.run_sync, self._md5.update, view)
                for offset in range(0, len(view), _COPY_CHUNK):
                    if not await self._push(view[offset:offset + _COPY_CHUNK]):
                        break
                else:
                    sent = True
        finally:
            self._unusable = not sent  # failed, or cancelled half-sent: never resumed
        if not sent:
            await self._done.wait()
            raise self._broken() from self._error
        self._next += 1

    async def complete(self) -> ObjectMeta:
        self._refuse_if_unusable()
        self._start()
        path = self.backend._path(self.key)
        try:
            # the conditions again, just before the last bytes let Manta commit the object
            await self.backend.check_conditions(self.key, *self.conditions)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.abort()
            raise
        await self._push(None)  # the request being gone shows in its outcome below
        await self._send.aclose()
        await self._done.wait()
        if self._meta is None:
            raise self._broken() from self._error
        meta = self._meta
        mine = base64.b64encode(self._md5.digest()).decode()
        theirs = meta.checksums.get("md5")
        if theirs is None:
            log.warning("manta: put %s: the server sent no Computed-MD5; the upload is "
                        "not verified", path)
            meta = dataclasses.replace(meta, checksums={"md5": mine})
        elif theirs != mine:
            err = IntegrityError(f"manta: put {path}: the server received bytes with MD5 "
                                 f"{theirs}, not {mine}")
            err.stored_etag = meta.etag
            raise err
        if self.size is not None and meta.size != self.size:
            raise IntegrityError(f"manta: put {path}: sent {meta.size} of {self.size} bytes")
        return meta

    async def abort(self) -> None:
        if not self._started:
            return
        self._scope.cancel()  # the connection drops mid-body: the server keeps nothing
        await self._done.wait()


# -- building the backend --------------------------------------------------------------


def _setting(name: str, options: Mapping[str, str], section: Mapping[str, str],
             environ: Mapping[str, str]) -> str | None:
    """``-o`` option, then environment variable, then the config file (highest first)."""
    if options.get(name):
        return options[name]
    env = _ENV.get(name)
    if env and environ.get(env):
        return environ[env]
    return section.get(name) or None


def settings_from(source: Source, options: Mapping[str, str],
                  environ: Mapping[str, str] | None = None,
                  section: Mapping[str, str] | None = None) -> Settings:
    """Gather the settings for ``source`` (see ``OPTIONS``); raises ``ConfigError``."""
    env = os.environ if environ is None else environ
    sect = config_file.section("manta") if section is None else section
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"manta: unknown option {unknown[0]!r}")

    def get(name: str) -> str | None:
        return _setting(name, options, sect, env)

    url = get("url")
    if source.host:
        # manta://HOST/...: the host names the endpoint; MANTA_URL's scheme is kept when it
        # names the same host (a plain-HTTP test server, say)
        given = urllib.parse.urlsplit(url) if url else None
        url = f"{given.scheme}://{source.host}" if given and given.netloc == source.host \
            else f"https://{source.host}"
    if not url:
        raise ConfigError("manta: no endpoint: set MANTA_URL (or -o url=) or write the "
                          "source as manta://HOST/LOGIN/stor/...")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"manta: url {url!r} is not an http(s) URL")
    login = source.bucket
    base = "/" + "/".join([login, *source.path.split("/")]).rstrip("/")

    def flag(name: str) -> bool:
        value = (get(name) or "").lower()
        if value and value not in (*_TRUE, "0", "false", "no", "off"):
            raise ConfigError(f"manta: {name}={value!r}: expected true or false")
        return value in _TRUE

    def number(name: str, default: float) -> float:
        raw = get(name)
        try:
            value = float(raw) if raw else default
        except ValueError:
            value = -1
        if value <= 0:
            raise ConfigError(f"manta: {name}={raw!r}: expected a positive number")
        return value

    return Settings(
        url=url.rstrip("/"), login=login, base=base, user=get("user") or login,
        key_id=get("key_id"), key_file=get("key_file"), subuser=get("subuser"),
        role=get("role"), tls_insecure=flag("tls_insecure"), anonymous=flag("anonymous"),
        connections=int(number("connections", 16)), timeout=number("timeout", 60.0),
        uploads=_choice("uploads", get("uploads"), ("stream", "multipart")),
    )


def _choice(name: str, value: str | None, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed`` (the first when unset); else ConfigError."""
    if not value:
        return allowed[0]
    if value not in allowed:
        raise ConfigError(f"manta: {name}={value!r}: expected {' or '.join(allowed)}")
    return value


def open_backend(source: Source, options: Mapping[str, str]) -> MantaBackend:
    settings = settings_from(source, options)
    key: SigningKey | None = None
    public = settings.base.split("/")[2:3] == ["public"]
    if public and not settings.anonymous and not settings.key_id and not settings.key_file:
        # /LOGIN/public is world-readable: with no key at all, mount it read-only
        try:
            key = find_key(None, None, settings.ssh_dir)
        except ConfigError:
            log.info("manta: no SSH key; mounting %s read-only without credentials",
                     settings.base)
            settings.anonymous = True
    return MantaBackend(settings, key=key)
