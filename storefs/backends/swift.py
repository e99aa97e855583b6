"""``swift://CONTAINER[/PREFIX]`` and ``swift:`` (a whole account): OpenStack Swift.

python-swiftclient is blocking: each worker thread keeps its own ``Connection``
(``threading.local``; a Connection holds one HTTP connection and is not thread-safe) and
every call runs in ``trio.to_thread.run_sync`` under one ``CapacityLimiter``
(``-o connections=N``).  Connections are made with ``retries=0``: retrying is
``storefs.backends.retrying``'s job; swiftclient still re-authenticates once when a token
expires (a 401 on a request), which is not a retry of a failed operation.  A token obtained
by one thread is handed to the connections of the others, so a mount authenticates once.

Credentials, as OpenStack users have them (``-o`` options win over the environment, which
wins over the config file's ``swift`` section): the variables of an OpenStack RC file v3
(``OS_AUTH_URL``, ``OS_IDENTITY_API_VERSION``, ``OS_USERNAME``, ``OS_PASSWORD``,
``OS_USER_DOMAIN_NAME``, ``OS_PROJECT_NAME``, ``OS_PROJECT_DOMAIN_NAME``, ``OS_REGION_NAME``,
``OS_INTERFACE``...), application credentials (``OS_AUTH_TYPE=v3applicationcredential``,
``OS_APPLICATION_CREDENTIAL_ID`` / ``_SECRET``), tempauth v1 (``ST_AUTH``, ``ST_USER``,
``ST_KEY``; ``ST_AUTH`` wins when both kinds are set, as with ``swift``), or a ready token
(``OS_STORAGE_URL`` + ``OS_AUTH_TOKEN``).

Layout
    ``swift://C/P`` keeps key ``k`` in object ``P + k`` of container ``C``.  ``swift:`` maps
    the account: key ``c/k`` is object ``k`` of container ``c``, the containers are the
    top-level directories (``make_dir("c/")`` creates a container, ``remove_dir("c/")``
    deletes an empty one and raises ``NotEmpty`` otherwise), and no plain object can live at
    the top.  Directories are ``delimiter=/`` pseudo-directories plus zero-byte
    ``dir/`` marker objects of type ``application/directory``; markers other tools wrote
    (``application/x-directory``, ``text/directory``, and ``dir`` without the slash, as
    ``swift upload`` makes them) read as directories too.

Metadata
    User metadata is the ``X-Object-Meta-*`` headers, keys lower-case with the prefix
    stripped (``X-Object-Meta-Mtime`` -> ``mtime``, what ``swift upload`` writes); POST
    replaces them all, which is ``set_metadata``'s contract.  Swift limits them (per object:
    90 items, names <= 128 bytes, values <= 256 bytes, 4096 bytes overall); a set beyond a
    limit is refused here with ``TooLarge`` before anything is sent.  WSGI turns ``_`` in a
    header name into ``-``, so a key ``a_b`` reads back as ``a-b``.  Listings carry no user
    metadata (``metadata_complete`` is False).

Large objects
    Uploads through ``begin_upload`` become Static Large Objects: each part is a segment
    object, uploaded when it is written, into ``<container>_segments`` (``swift upload``'s
    choice; ``-o segment_container=`` overrides it) under
    ``<object>/slo/<timestamp>/<part size>/<part number:08d>``, and ``complete`` writes the
    manifest.  SLOs and DLOs (``X-Object-Manifest``) of other tools read as one file (Swift
    serves ranged GETs through the manifest); a DLO's size is taken from a HEAD, because
    listings show its manifest's zero bytes.  Deleting or overwriting a large object deletes
    its segments (``?multipart-manifest=delete`` for SLOs, the prefix for DLOs, as ``swift
    delete`` does).  A rename moves the manifest only (the segments stay where they are); a
    copy of an SLO copies its segments on the server, so the two never share them.

Versions and checks
    The etag is Swift's ETag (the MD5 of the bytes; for an SLO the MD5 of its segments'
    MD5s) without quotes.  Every PUT sends the MD5 of its bytes, so Swift refuses damaged
    uploads (422); a read that covers a whole plain object is checked against its MD5.
    ``ObjectMeta.checksums["md5"]`` is **hex**, present for plain objects only.
    ``if_none_match`` is Swift's atomic ``If-None-Match: *``; ``if_match`` on reads and
    copies is Swift's ``If-Match``; ``if_match`` on writes is checked by a HEAD just before
    the PUT (Swift has no conditional overwrite), so it narrows the window for a lost
    update but cannot close it.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests
import trio
from swiftclient import client as sc

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
    NotEmpty,
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

T = TypeVar("T")

MiB = 1024 * 1024
GiB = 1024 * MiB

OPTIONS: dict[str, str] = {
    "auth_url": "identity endpoint: Keystone (.../v3) or tempauth (.../auth/v1.0); "
                "default $OS_AUTH_URL or $ST_AUTH",
    "auth_version": "1 (tempauth), 2 or 3 (Keystone); default $OS_IDENTITY_API_VERSION, "
                    "1 with $ST_AUTH, else 3",
    "username": "user name; default $OS_USERNAME or $ST_USER",
    "password": "password (tempauth: the key); default $OS_PASSWORD or $ST_KEY",
    "user_id": "user id instead of the name; default $OS_USER_ID",
    "user_domain_name": "default $OS_USER_DOMAIN_NAME",
    "user_domain_id": "default $OS_USER_DOMAIN_ID",
    "project_name": "default $OS_PROJECT_NAME (or $OS_TENANT_NAME)",
    "project_id": "default $OS_PROJECT_ID (or $OS_TENANT_ID)",
    "project_domain_name": "default $OS_PROJECT_DOMAIN_NAME",
    "project_domain_id": "default $OS_PROJECT_DOMAIN_ID",
    "region": "region of the object-store endpoint; default $OS_REGION_NAME, else any",
    "interface": "catalog interface: public, internal or admin; default $OS_INTERFACE, "
                 "else public",
    "auth_type": "password or v3applicationcredential; default $OS_AUTH_TYPE, else password "
                 "(application credentials select the latter by themselves)",
    "application_credential_id": "default $OS_APPLICATION_CREDENTIAL_ID",
    "application_credential_secret": "default $OS_APPLICATION_CREDENTIAL_SECRET",
    "storage_url": "storage URL to use instead of the catalog's; default $OS_STORAGE_URL",
    "auth_token": "a token for storage_url (no authentication then); default $OS_AUTH_TOKEN",
    "cacert": "CA bundle for HTTPS; default $OS_CACERT, else the system's",
    "insecure": "do not verify TLS certificates; default off",
    "segment_container": "container for large-object segments; default <container>_segments",
    "connections": "parallel connections (worker threads); default 8",
    "timeout": "seconds to wait for an answer to one request; default 60",
}

#: the variables of an OpenStack RC file, by setting
_OS_ENV: dict[str, tuple[str, ...]] = {
    "auth_url": ("OS_AUTH_URL",),
    "auth_version": ("OS_IDENTITY_API_VERSION", "OS_AUTH_VERSION"),
    "username": ("OS_USERNAME",),
    "password": ("OS_PASSWORD",),
    "user_id": ("OS_USER_ID",),
    "user_domain_name": ("OS_USER_DOMAIN_NAME",),
    "user_domain_id": ("OS_USER_DOMAIN_ID",),
    "project_name": ("OS_PROJECT_NAME", "OS_TENANT_NAME"),
    "project_id": ("OS_PROJECT_ID", "OS_TENANT_ID"),
    "project_domain_name": ("OS_PROJECT_DOMAIN_NAME",),
    "project_domain_id": ("OS_PROJECT_DOMAIN_ID",),
    "region": ("OS_REGION_NAME",),
    "interface": ("OS_INTERFACE", "OS_ENDPOINT_TYPE"),
    "auth_type": ("OS_AUTH_TYPE",),
    "application_credential_id": ("OS_APPLICATION_CREDENTIAL_ID",),
    "application_credential_secret": ("OS_APPLICATION_CREDENTIAL_SECRET",),
    "cacert": ("OS_CACERT",),
}
#: tempauth's variables (the ``swift`` command's ``ST_*``)
_ST_ENV: dict[str, tuple[str, ...]] = {
    "auth_url": ("ST_AUTH",),
    "auth_version": ("ST_AUTH_VERSION",),
    "username": ("ST_USER",),
    "password": ("ST_KEY",),
}
_TOKEN_ENV: dict[str, tuple[str, ...]] = {
    "storage_url": ("OS_STORAGE_URL",),
    "auth_token": ("OS_AUTH_TOKEN",),
}

#: content types that mark a directory (the first is what storefs writes)
DIR_TYPES = ("application/directory", "application/x-directory", "text/directory")

#: Swift's default constraints (``[swift-constraints]``) on user metadata
MAX_META_COUNT = 90
MAX_META_NAME = 128
MAX_META_VALUE = 256
MAX_META_OVERALL = 4096

_META = "x-object-meta-"
#: printable ASCII but "%": what a metadata value may hold as it is
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_CONTAINER_META = "x-container-meta-"


def _capabilities(max_key_length: int, account_mode: bool) -> Capabilities:
    return Capabilities(
        containers=account_mode,
        name="swift",
        real_directories=False,
        server_side_copy=True,
        cheap_rename=False,
        metadata_update=True,
        conditional_put=True,
        conditional_get=True,
        multipart_threshold=16 * MiB,
        # Swift's min_segment_size is 1 byte nowadays (1 MiB in old releases)
        min_part_size=1 * MiB,
        max_part_size=5 * GiB,
        # max_manifest_segments
        max_parts=1000,
        part_size=16 * MiB,
        sequential_parts=False,
        max_metadata_size=MAX_META_OVERALL,
        max_object_size=None,
        max_key_length=max_key_length,
        ordered_listing=True,
        list_page_size=1000,
        metadata_style="s3fs",
    )


# -- errors, kept as data -------------------------------------------------------------------

#: HTTP status -> (storefs error, what it means to the user)
STATUS_ERRORS: dict[int, tuple[type[StorefsError], str]] = {
    400: (InvalidName, "refused as invalid by Swift"),
    401: (AuthError, "credentials refused"),
    403: (PermissionDenied, "access denied"),
    404: (NotFound, "not found"),
    408: (TransientError, "request timed out on the server"),
    409: (StorefsError, "conflict"),
    411: (StorefsError, "length required"),
    412: (PreconditionFailed, "changed by another writer (precondition failed)"),
    413: (TooLarge, "too large for Swift (max_file_size or quota)"),
    422: (IntegrityError, "Swift got bytes whose MD5 does not match"),
    429: (TransientError, "rate limited by Swift"),
    498: (TransientError, "rate limited by Swift"),
    499: (TransientError, "request cancelled"),
    500: (TransientError, "Swift internal error"),
    502: (TransientError, "bad gateway"),
    503: (TransientError, "Swift unavailable"),
    504: (TransientError, "gateway timeout"),
    507: (TransientError, "Swift has no space left on its disks"),
}

#: words in a swiftclient/keystone message without HTTP status -> (error, meaning)
MESSAGE_ERRORS: tuple[tuple[str, type[StorefsError], str], ...] = (
    ("Unauthorized", AuthError, "credentials refused by the identity service"),
    ("Endpoint for object-store not found", ConfigError,
     "no object-store endpoint in the service catalog (check the region and interface)"),
    ("require python-keystoneclient", ConfigError,
     "Keystone auth needs python-keystoneclient: pip install 'storefs[swift]'"),
    ("Authorization Failure", AuthError, "authorization failure"),
)


def _keystone_exceptions() -> tuple[type[BaseException], ...]:
    try:
        from keystoneauth1 import exceptions as ksa
    except ImportError:  # tempauth-only installs
        return ()
    return (ksa.ConnectFailure, ksa.ConnectionError, ksa.ConnectTimeout)


#: exception classes that mean the network failed (keystoneauth's and requests')
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError, requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError, ConnectionError, TimeoutError,
    *_keystone_exceptions(),
)


def translate(exc: BaseException, where: str, *, exists_error: bool = False) -> StorefsError:
    """The storefs error for a swiftclient failure of the request about ``where``."""
    if isinstance(exc, StorefsError):
        return exc
    if isinstance(exc, NETWORK_ERRORS):
        return TransientError(f"{where}: {network_reason(exc)}")
    status = getattr(exc, "http_status", None)
    if isinstance(exc, sc.ClientException) and status is None:
        text = str(exc.msg or exc)
        for needle, err, meaning in MESSAGE_ERRORS:
            if needle in text:
                return err(f"{where}: {meaning}")
        return StorefsError(f"{where}: {text.splitlines()[0][:200] if text else 'failed'}")
    if not isinstance(status, int):
        return StorefsError(f"{where}: {type(exc).__name__}")
    if status == 412 and exists_error:
        return AlreadyExists(f"{where}: already exists")
    err, meaning = STATUS_ERRORS.get(
        status, (TransientError, "server error") if status >= 500 else (StorefsError, "refused")
    )
    return err(f"{where}: {meaning} (HTTP {status})")


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "http_status", None)
    return status if isinstance(status, int) else None


# -- helpers ----------------------------------------------------------------------------------


def _unquote(etag: str | None) -> str:
    return (etag or "").strip().strip('"')


def _parse_listing_time(value: str | None) -> float:
    if not value:
        return 0.0
    with contextlib.suppress(ValueError):
        return datetime.datetime.fromisoformat(value).replace(
            tzinfo=datetime.UTC).timestamp()
    return 0.0


def _header_time(headers: Mapping[str, str]) -> float:
    ts = headers.get("x-timestamp")
    if ts:
        with contextlib.suppress(ValueError):
            return float(ts)
    lm = headers.get("last-modified")
    if lm:
        with contextlib.suppress(ValueError, TypeError):
            return parsedate_to_datetime(lm).timestamp()
    return time.time()


def _is_dir_type(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() in DIR_TYPES


def _meta_headers(metadata: Metadata, prefix: str = "X-Object-Meta-") -> dict[str, str]:
    """``X-Object-Meta-*`` headers for ``metadata``, refused here if Swift would refuse it."""
    if len(metadata) > MAX_META_COUNT:
        raise TooLarge(f"{len(metadata)} metadata items: Swift keeps at most {MAX_META_COUNT}")
    total = 0
    headers: dict[str, str] = {}
    for key, value in metadata.items():
        # swiftclient percent-decodes every header value it reads (as the swift command
        # does), so "%" and non-ASCII are sent percent-encoded to come back unchanged
        value = urllib.parse.quote(value, safe=_HEADER_SAFE)
        name_len, value_len = len(key.encode()), len(value.encode())
        if name_len > MAX_META_NAME:
            raise TooLarge(f"metadata name {key[:40]!r}...: Swift allows {MAX_META_NAME} bytes")
        if value_len > MAX_META_VALUE:
            raise TooLarge(f"metadata {key!r}: value of {value_len} bytes, Swift allows "
                           f"{MAX_META_VALUE}")
        total += name_len + value_len
        headers[prefix + key] = value
    if total > MAX_META_OVERALL:
        raise TooLarge(f"{total} bytes of metadata: Swift allows {MAX_META_OVERALL} per object")
    return headers


def _user_metadata(headers: Mapping[str, str], prefix: str = _META) -> dict[str, str]:
    return {k[len(prefix):].lower(): v for k, v in headers.items() if k.lower().startswith(prefix)}


def _large_kind(headers: Mapping[str, str]) -> str | None:
    """"slo", "dlo" or None for a HEAD answer."""
    if str(headers.get("x-static-large-object", "")).lower() == "true":
        return "slo"
    if headers.get("x-object-manifest"):
        return "dlo"
    return None


@dataclass(frozen=True)
class _Where:
    """Where a key lives: container and object name ("" = the container itself)."""

    container: str
    name: str


@dataclass(frozen=True)
class _Head:
    """A HEAD answer about an object, with what deleting or overwriting it involves."""

    headers: dict[str, str]

    @property
    def etag(self) -> str:
        return _unquote(self.headers.get("etag"))

    @property
    def large(self) -> str | None:
        return _large_kind(self.headers)


# -- the backend ------------------------------------------------------------------------------


class SwiftBackend(Backend):
    """One container (and optional prefix) of Swift, or a whole account."""

    def __init__(
        self,
        container: str,
        prefix: str,
        connection_kwargs: Mapping[str, Any],
        *,
        auth_url: str | None = None,
        segment_container: str | None = None,
        connections: int = 8,
    ) -> None:
        self.container = container
        self.prefix = prefix if container else ""
        self.account_mode = not container
        self.auth_url = auth_url
        self.segment_container_override = segment_container
        self._conn_kwargs = dict(connection_kwargs)
        room = 1024 - len(self.prefix.encode())
        if self.account_mode:
            room = 256 + 1 + 1024  # container name, "/", object name
        self.capabilities = _capabilities(room, self.account_mode)
        self._limiter = trio.CapacityLimiter(connections)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._token: tuple[str, str] | None = None
        self._connections: list[sc.Connection] = []
        self._segment_containers: set[str] = set()
        self._requests: Counter[str] = Counter()

    # -- plumbing ---------------------------------------------------------------------------

    def describe(self) -> str:
        where = f"swift://{self.container}/{self.prefix}" if self.container else "swift:"
        return f"{where} via {self.auth_url}" if self.auth_url else where

    def _where(self, key: str = "") -> str:
        if self.account_mode:
            return f"swift:{key}"
        return f"swift://{self.container}/{self.prefix}{key}"

    def _loc(self, key: str) -> _Where:
        if not self.account_mode:
            return _Where(self.container, self.prefix + key)
        container, _, name = key.partition("/")
        return _Where(container, name)

    def _key(self, container: str, name: str) -> str:
        if self.account_mode:
            return f"{container}/{name}"
        return name[len(self.prefix):] if name.startswith(self.prefix) else name

    def _object_loc(self, key: str) -> _Where:
        """The location of a key that must be an object (not the account or a container)."""
        loc = self._loc(key)
        if not loc.container or not loc.name:
            if self.account_mode:
                raise PermissionDenied(f"{self._where(key)}: only containers (directories) "
                                       f"can be at the top of a Swift account")
            raise InvalidName(f"{self._where(key)}: not an object name")
        return loc

    def _segments_of(self, container: str) -> str:
        return self.segment_container_override or f"{container}_segments"

    def _conn(self) -> sc.Connection:
        conn: sc.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sc.Connection(**self._conn_kwargs)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        with self._lock:
            # a token another thread got: no authentication per thread
            if not conn.token and self._token is not None:
                conn.url, conn.token = self._token
        return conn

    def _in_thread(self, fn: Callable[[sc.Connection], T]) -> T:
        conn = self._conn()
        try:
            return fn(conn)
        finally:
            _forget_request_body(conn)
            if conn.url and conn.token:
                with self._lock:
                    self._token = (conn.url, conn.token)

    async def _run(self, op: str, fn: Callable[[sc.Connection], T]) -> T:
        self._requests[op] += 1
        return await trio.to_thread.run_sync(self._in_thread, fn, limiter=self._limiter)

    def _meta_from_head(self, key: str, headers: Mapping[str, str]) -> ObjectMeta:
        large = _large_kind(headers)
        etag = _unquote(headers.get("etag"))
        return ObjectMeta(
            key=key,
            size=int(headers.get("content-length") or 0),
            etag=ETag(etag),
            mtime=_header_time(headers),
            is_dir=key.endswith("/"),
            content_type=headers.get("content-type"),
            metadata=_user_metadata(headers),
            checksums={"md5": etag} if large is None and etag else {},
            storage_class=headers.get("x-storage-policy"),
            metadata_complete=True,
        )

    def _meta_from_listing(self, container: str, entry: Mapping[str, Any]) -> ObjectMeta:
        key = self._key(container, str(entry["name"]))
        slo_etag = entry.get("slo_etag")
        etag = _unquote(slo_etag) if slo_etag else str(entry.get("hash") or "")
        return ObjectMeta(
            key=key,
            size=int(entry.get("bytes") or 0),
            etag=ETag(etag),
            mtime=_parse_listing_time(entry.get("last_modified")),
            is_dir=key.endswith("/"),
            content_type=entry.get("content_type"),
            metadata={},
            checksums={} if slo_etag else ({"md5": etag} if etag else {}),
            metadata_complete=False,
        )

    def _container_meta(self, container: str, headers: Mapping[str, str]) -> ObjectMeta:
        return ObjectMeta(
            key=f"{container}/",
            size=0,
            etag=ETag(""),
            mtime=_header_time(headers),
            is_dir=True,
            content_type=None,
            metadata=_user_metadata(headers, _CONTAINER_META),
            storage_class=headers.get("x-storage-policy"),
        )

    # -- life cycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        def authenticate(conn: sc.Connection) -> None:
            if not conn.token:
                conn.url, conn.token = conn.get_auth()
            if not conn.url:
                conn.url = conn.token = None
                raise ConfigError("swift: no object-store endpoint in the service catalog "
                                  "(check the region and interface)")

        def check(conn: sc.Connection) -> None:
            if self.account_mode:
                conn.head_account()
            else:
                conn.head_container(self.container)

        try:
            await self._run("auth", authenticate)
        except Exception as exc:
            raise self._auth_error(exc) from exc
        try:
            await self._run("connect", check)
        except Exception as exc:
            raise self._check_error(exc) from exc

    def _auth_error(self, exc: BaseException) -> StorefsError:
        at = self.auth_url or "the storage URL"
        if isinstance(exc, StorefsError):
            return exc
        if isinstance(exc, NETWORK_ERRORS):
            return ConnectError(f"swift: cannot reach {at}: {network_reason(exc)}")
        status = _status(exc)
        if status in (401, 403) or (status is None and "Unauthorized" in str(exc)):
            return AuthError(f"swift: credentials refused by {at}")
        if type(exc).__name__ in ("EndpointNotFound", "EmptyCatalog"):
            return ConfigError("swift: no object-store endpoint in the service catalog "
                               "(check the region and interface)")
        err = translate(exc, "swift: authentication")
        if isinstance(err, TransientError):
            return ConnectError(str(err))
        return err

    def _check_error(self, exc: BaseException) -> StorefsError:
        what = "the account" if self.account_mode else f"container {self.container!r}"
        if isinstance(exc, NETWORK_ERRORS):
            return ConnectError(f"swift: cannot reach the storage URL of {what}: "
                                f"{network_reason(exc)}")
        status = _status(exc)
        if status == 404:
            if self.account_mode:
                return NotFound("swift: the account does not exist")
            return NotFound(f"swift: container {self.container!r} does not exist "
                            f"(create it with: swift post {self.container})")
        if status in (401, 403):
            return AuthError(f"swift: these credentials may not read {what} (HTTP {status})")
        return translate(exc, f"swift: {what}")

    async def aclose(self) -> None:
        with self._lock:
            conns, self._connections = self._connections, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()

    def statistics(self) -> dict[str, Any]:
        return {"requests": dict(self._requests)}

    def check_name(self, key: str) -> None:
        super().check_name(key)
        if "\x00" in key:
            raise InvalidName(f"{key!r}: Swift object names cannot hold NUL")
        loc = self._loc(key)
        if self.account_mode and len(loc.container.encode()) > 256:
            raise InvalidName(f"{loc.container[:40]}...: container names are at most 256 bytes")

    # -- reads ------------------------------------------------------------------------------

    def _head_sync(self, conn: sc.Connection, loc: _Where) -> _Head | None:
        try:
            return _Head(dict(conn.head_object(loc.container, loc.name)))
        except sc.ClientException as exc:
            if exc.http_status == 404:
                return None
            raise

    async def head(self, key: str) -> ObjectMeta:
        loc = self._loc(key)
        where = self._where(key)
        if self.account_mode and not loc.name:
            if not loc.container or not key.endswith("/"):
                raise NotFound(where)
            try:
                headers = await self._run("head", lambda c: c.head_container(loc.container))
            except Exception as exc:
                raise translate(exc, where) from exc
            return self._container_meta(loc.container, headers)

        def call(conn: sc.Connection) -> ObjectMeta:
            found = self._head_sync(conn, loc)
            if found is not None:
                return self._meta_from_head(key, found.headers)
            if key.endswith("/"):
                # a directory marker another tool wrote without the slash
                bare = self._head_sync(conn, _Where(loc.container, loc.name.rstrip("/")))
                if bare is not None and _is_dir_type(bare.headers.get("content-type")):
                    return self._meta_from_head(key, bare.headers)
            raise NotFound(where)

        try:
            return await self._run("head", call)
        except Exception as exc:
            raise translate(exc, where) from exc

    async def list_page(
        self, prefix: str, *, delimiter: str = "/", token: str | None = None, limit: int = 0
    ) -> ListPage:
        limit = limit or self.capabilities.list_page_size
        if self.account_mode and not prefix:
            if delimiter:
                return await self._list_containers(token, limit)
            return await self._list_account_recursive(token, limit)
        loc = self._loc(prefix)
        return await self._list_container(loc.container, loc.name, delimiter, token, limit)

    async def _list_containers(self, token: str | None, limit: int) -> ListPage:
        try:
            _, entries = await self._run(
                "list", lambda c: c.get_account(marker=token or "", limit=limit))
        except Exception as exc:
            raise translate(exc, "swift: account") from exc
        prefixes = [f"{e['name']}/" for e in entries]
        nxt = entries[-1]["name"] if len(entries) >= limit else None
        return ListPage([], prefixes, nxt)

    async def _list_account_recursive(self, token: str | None, limit: int) -> ListPage:
        container, marker = json.loads(token) if token else (None, "")
        if container is None:
            container = await self._next_container("")
            if container is None:
                return ListPage([], [], None)
        page = await self._list_container(container, "", "", marker or None, limit)
        objects = list(page.objects)
        if not marker:
            # the container itself, so that empty containers show in a recursive walk
            objects.insert(0, ObjectMeta(key=f"{container}/", size=0, etag=ETag(""),
                                         mtime=0.0, is_dir=True, metadata_complete=False))
        if page.next_token is not None:
            return ListPage(objects, [], json.dumps([container, page.next_token]))
        following = await self._next_container(container)
        return ListPage(objects, [], json.dumps([following, ""]) if following else None)

    async def _next_container(self, after: str) -> str | None:
        try:
            _, entries = await self._run("list", lambda c: c.get_account(marker=after, limit=1))
        except Exception as exc:
            raise translate(exc, "swift: account") from exc
        return str(entries[0]["name"]) if entries else None

    async def _list_container(self, container: str, name_prefix: str, delimiter: str,
                              token: str | None, limit: int) -> ListPage:
        where = self._where(self._key(container, name_prefix))

        def call(conn: sc.Connection) -> list[dict[str, Any]]:
            _, entries = conn.get_container(
                container, prefix=name_prefix or None, delimiter=delimiter or None,
                marker=token or "", limit=limit, full_listing=False)
            return list(entries)

        try:
            entries = await self._run("list", call)
        except sc.ClientException as exc:
            if exc.http_status == 404:
                return ListPage([], [], None)  # no container: nothing below the prefix
            raise translate(exc, where) from exc
        except Exception as exc:
            raise translate(exc, where) from exc
        objects: list[ObjectMeta] = []
        prefixes: list[str] = []
        for entry in entries:
            if "subdir" in entry:
                prefixes.append(self._key(container, str(entry["subdir"])))
                continue
            name = str(entry["name"])
            if delimiter and not name.endswith("/") and _is_dir_type(entry.get("content_type")):
                # "swift upload"'s marker "dir" (no slash) is the directory "dir/"
                prefixes.append(self._key(container, name + "/"))
                continue
            objects.append(self._meta_from_listing(container, entry))
        # a DLO's manifest is zero bytes in listings; its HEAD tells the real size
        objects = await self._resolve_empty(objects)
        last = entries[-1] if entries else None
        nxt = None
        if last is not None and len(entries) >= limit:
            nxt = str(last.get("name") or last.get("subdir"))
        return ListPage(objects, sorted(set(prefixes)), nxt)

    async def _resolve_empty(self, objects: list[ObjectMeta]) -> list[ObjectMeta]:
        empty = [i for i, o in enumerate(objects) if o.size == 0 and not o.is_dir]
        if not empty:
            return objects
        out = list(objects)

        async def one(i: int) -> None:
            with contextlib.suppress(NotFound):
                meta = await self.head(objects[i].key)
                if meta.size:
                    out[i] = meta

        async with fan_out() as nursery:
            for i in empty:
                nursery.start_soon(one, i)
        return out

    async def get_range(
        self, key: str, start: int, end: int, *, if_match: ETag | None = None
    ) -> bytes:
        if end <= start:
            return b""
        loc = self._loc(key)
        if not loc.container or not loc.name:
            raise NotFound(self._where(key))
        where = self._where(key)
        headers = {"Range": f"bytes={start}-{end - 1}"}
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'

        def call(conn: sc.Connection) -> bytes:
            try:
                got, body = conn.get_object(loc.container, loc.name, headers=headers)
            except sc.ClientException as exc:
                if exc.http_status == 416:
                    return b""
                raise
            data = bytes(body)
            total = _total(got.get("content-range"), len(data))
            etag = _unquote(got.get("etag"))
            if (start == 0 and total == len(data) and _large_kind(got) is None and etag
                    and hashlib.md5(data).hexdigest() != etag):
                raise IntegrityError(f"{where}: MD5 of the bytes read does not match the ETag")
            return data

        try:
            return await self._run("get", call)
        except Exception as exc:
            raise translate(exc, where) from exc

    # -- writes -----------------------------------------------------------------------------

    def _check_overwrite(self, old: _Head | None, if_match: ETag | None, where: str) -> None:
        if if_match is not None and (old is None or old.etag != if_match):
            raise PreconditionFailed(f"{where}: changed since it was read")

    def _drop_segments_sync(self, conn: sc.Connection, loc: _Where, old: _Head,
                            keep: Iterable[str] = ()) -> None:
        """Delete the segments of the large object ``old`` was (after it was replaced)."""
        kept = set(keep)
        for container, name in self._segment_list_sync(conn, loc, old):
            if f"/{container}/{name}" in kept:
                continue
            with contextlib.suppress(sc.ClientException):
                conn.delete_object(container, name)

    def _segment_list_sync(self, conn: sc.Connection, loc: _Where,
                           old: _Head) -> list[tuple[str, str]]:
        if old.large == "dlo":
            container, _, prefix = old.headers["x-object-manifest"].partition("/")
            _, entries = conn.get_container(container, prefix=prefix, full_listing=True)
            return [(container, str(e["name"])) for e in entries if "name" in e]
        return []

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
        loc = self._object_loc(key)
        where = self._where(key)
        headers = _meta_headers(metadata)
        if if_none_match:
            headers["If-None-Match"] = "*"
        md5 = hashlib.md5(data).hexdigest()

        def call(conn: sc.Connection) -> ObjectMeta:
            old = None if if_none_match else self._head_with_segments_sync(conn, loc)
            self._check_overwrite(old, if_match, where)
            answer: dict[str, Any] = {}
            etag = conn.put_object(loc.container, loc.name, data, content_type=content_type,
                                   headers=headers, etag=md5, response_dict=answer)
            if _unquote(etag) != md5:
                raise IntegrityError(f"{where}: Swift stored bytes with another MD5")
            self._after_overwrite(conn, loc, old)
            return ObjectMeta(
                key=key, size=len(data), etag=ETag(md5),
                mtime=_header_time(answer.get("headers") or {}), is_dir=key.endswith("/"),
                content_type=content_type, metadata=dict(metadata), checksums={"md5": md5},
            )

        try:
            return await self._run("put", call)
        except Exception as exc:
            raise translate(exc, where, exists_error=if_none_match) from exc

    def _after_overwrite(self, conn: sc.Connection, loc: _Where, old: _Head | None,
                         keep: Iterable[str] = ()) -> None:
        """The old version was a large object: its segments are garbage now."""
        if old is None or old.large is None:
            return
        if old.large == "dlo":
            self._drop_segments_sync(conn, loc, old, keep)
        else:
            self._drop_slo_segments_sync(conn, old, keep)

    def _drop_slo_segments_sync(self, conn: sc.Connection, old: _Head,
                                keep: Iterable[str]) -> None:
        kept = set(keep)
        for path in old.headers.get("_storefs_segments", "").split("\n"):
            if not path or path in kept:
                continue
            container, _, name = path.lstrip("/").partition("/")
            with contextlib.suppress(sc.ClientException):
                conn.delete_object(container, name)

    def _head_with_segments_sync(self, conn: sc.Connection, loc: _Where) -> _Head | None:
        """HEAD, plus the segment list of an SLO (from its manifest), for clean-up later."""
        old = self._head_sync(conn, loc)
        if old is None or old.large != "slo":
            return old
        _, raw = conn.get_object(loc.container, loc.name,
                                 query_string="multipart-manifest=get&format=raw")
        paths = [str(s["path"]) for s in json.loads(raw)]
        return _Head({**old.headers, "_storefs_segments": "\n".join(paths)})

    async def make_dir(self, key: str, metadata: Metadata) -> ObjectMeta:
        loc = self._loc(key)
        if self.account_mode and loc.container and not loc.name:
            headers = _meta_headers(metadata, "X-Container-Meta-")
            try:
                await self._run("mkdir", lambda c: c.put_container(loc.container,
                                                                    headers=headers))
            except Exception as exc:
                raise translate(exc, self._where(key)) from exc
            return await self.head(key)
        return await self.put(key, b"", metadata, content_type=DIR_TYPES[0])

    async def remove_dir(self, key: str) -> None:
        loc = self._loc(key)
        if self.account_mode and loc.container and not loc.name:
            try:
                await self._run("rmdir", lambda c: c.delete_container(loc.container))
            except sc.ClientException as exc:
                if exc.http_status == 404:
                    return
                if exc.http_status == 409:
                    raise NotEmpty(f"swift: container {loc.container!r} is not empty") from exc
                raise translate(exc, self._where(key)) from exc
            except Exception as exc:
                raise translate(exc, self._where(key)) from exc
            return
        await self.delete(key)
        if key.endswith("/"):
            # and a slash-less marker another tool may have written for the same directory
            bare = key.rstrip("/")
            with contextlib.suppress(NotFound):
                meta = await self.head(bare)
                if _is_dir_type(meta.content_type):
                    await self.delete(bare)

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
        loc = self._object_loc(key)
        _meta_headers(metadata)  # refuse metadata Swift would refuse, before any segment
        if part_size < self.capabilities.min_part_size:
            raise ConfigError(f"swift: part size {part_size} is below "
                              f"{self.capabilities.min_part_size}")
        segments = self._segments_of(loc.container)
        if segments not in self._segment_containers:
            try:
                await self._run("mkdir", lambda c: c.put_container(segments))
            except Exception as exc:
                raise translate(exc, f"swift: segment container {segments!r}") from exc
            self._segment_containers.add(segments)
        # swift upload's layout: <object>/slo/<timestamp>/<segment size>/<index>
        stem = f"{loc.name}/slo/{time.time():.6f}/{part_size}"
        return SwiftUpload(self, key, loc, segments, stem, dict(metadata), part_size,
                           content_type, if_match, if_none_match)

    async def delete(self, key: str) -> None:
        loc = self._loc(key)
        if not loc.container or not loc.name:
            return  # nothing but containers at the top: remove_dir's job
        where = self._where(key)

        def call(conn: sc.Connection) -> None:
            old = self._head_sync(conn, loc)
            if old is None:
                return
            try:
                if old.large == "slo":
                    conn.delete_object(loc.container, loc.name,
                                       query_string="multipart-manifest=delete")
                    return
                conn.delete_object(loc.container, loc.name)
            except sc.ClientException as exc:
                if exc.http_status != 404:
                    raise
            if old.large == "dlo":
                self._drop_segments_sync(conn, loc, old)

        try:
            await self._run("delete", call)
        except Exception as exc:
            raise translate(exc, where) from exc

    async def delete_many(self, keys: Iterable[str]) -> None:
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
        return await self._copy(src, dst, metadata, if_match, move=False)

    async def rename(self, src: str, dst: str) -> ObjectMeta:
        meta = await self._copy(src, dst, None, None, move=True)
        return meta

    @staticmethod
    def _plain(listed: ObjectMeta) -> bool:
        """A listing shows an SLO by its slo_etag (then no md5 checksum) and a DLO only as
        its manifest's zero bytes: an object with bytes and an MD5 is a plain one."""
        return listed.size > 0 and "md5" in listed.checksums

    async def copy_listed(self, listed: ObjectMeta, dst: str) -> None:
        if not self._plain(listed):
            await self.copy(listed.key, dst)  # large objects copy their segments
            return
        s, d = self._object_loc(listed.key), self._object_loc(dst)

        def call(conn: sc.Connection) -> None:
            # one COPY: the destination is free (no old segments to clean) and the
            # source's metadata goes with it
            conn.copy_object(s.container, s.name, f"/{d.container}/{d.name}",
                             fresh_metadata=False)

        try:
            await self._run("copy", call)
        except Exception as exc:
            raise translate(exc, f"{self._where(listed.key)} -> {dst}") from exc

    async def delete_listed(self, listed: Sequence[ObjectMeta]) -> None:
        async def plain(key: str) -> None:
            loc = self._object_loc(key)

            def call(conn: sc.Connection) -> None:
                try:
                    conn.delete_object(loc.container, loc.name)
                except sc.ClientException as exc:
                    if exc.http_status != 404:
                        raise

            try:
                await self._run("delete", call)
            except Exception as exc:
                raise translate(exc, self._where(key)) from exc

        async with fan_out() as nursery:
            for obj in listed:
                # a large object's delete looks first, to take its segments with it
                nursery.start_soon(plain if self._plain(obj) else self.delete, obj.key)

    async def _copy(self, src: str, dst: str, metadata: Metadata | None,
                    if_match: ETag | None, *, move: bool) -> ObjectMeta:
        s, d = self._object_loc(src), self._object_loc(dst)
        where = f"{self._where(src)} -> {dst}"
        headers = _meta_headers(metadata) if metadata is not None else {}
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'

        def call(conn: sc.Connection) -> ObjectMeta:
            source = self._head_with_segments_sync(conn, s)
            if source is None:
                raise NotFound(self._where(src))
            self._check_overwrite(source, if_match, self._where(src))
            old = self._head_with_segments_sync(conn, d)
            keep: list[str] = []
            if source.large is not None and move:
                # a rename moves the manifest only: the segments now belong to dst
                conn.put_object(d.container, d.name, b"", content_length=0,
                                headers={**headers, "X-Copy-From": f"/{s.container}/{s.name}"},
                                query_string="multipart-manifest=get")
                keep = source.headers.get("_storefs_segments", "").split("\n")
                if source.large == "dlo":
                    keep = [f"/{c}/{n}" for c, n in self._segment_list_sync(conn, s, source)]
            elif source.large == "slo":
                self._copy_slo_sync(conn, s, d, source, metadata)
            else:
                # plain objects, and DLOs (Swift concatenates them into one object)
                conn.copy_object(s.container, s.name, f"/{d.container}/{d.name}",
                                 headers=headers, fresh_metadata=metadata is not None)
            if old is not None and (d.container, d.name) != (s.container, s.name):
                self._after_overwrite(conn, d, old, keep)
            if move:
                with contextlib.suppress(sc.ClientException):
                    conn.delete_object(s.container, s.name)
            found = self._head_sync(conn, d)
            if found is None:
                raise TransientError(f"{where}: the copy is not visible yet")
            return self._meta_from_head(dst, found.headers)

        try:
            return await self._run("copy", call)
        except Exception as exc:
            raise translate(exc, where) from exc

    def _copy_slo_sync(self, conn: sc.Connection, s: _Where, d: _Where, source: _Head,
                       metadata: Metadata | None) -> None:
        """Copy an SLO segment by segment on the server, so the copies share nothing (a
        plain COPY would concatenate it, which fails above max_file_size)."""
        _, raw = conn.get_object(s.container, s.name,
                                 query_string="multipart-manifest=get&format=raw")
        segments = self._segments_of(d.container)
        if segments not in self._segment_containers:
            conn.put_container(segments)
            self._segment_containers.add(segments)
        stem = f"{d.name}/slo/{time.time():.6f}/copy"
        manifest = []
        for i, seg in enumerate(json.loads(raw)):
            container, _, name = str(seg["path"]).lstrip("/").partition("/")
            new = f"{stem}/{i:08d}"
            conn.copy_object(container, name, f"/{segments}/{new}")
            entry = {"path": f"/{segments}/{new}", "etag": seg.get("etag"),
                     "size_bytes": seg.get("size_bytes")}
            if "range" in seg:
                entry["range"] = seg["range"]
            manifest.append(entry)
        if metadata is None:
            headers = {f"X-Object-Meta-{k}": v for k, v in _user_metadata(source.headers).items()}
        else:
            headers = _meta_headers(metadata)
        conn.put_object(d.container, d.name, json.dumps(manifest),
                        content_type=source.headers.get("content-type"), headers=headers,
                        query_string="multipart-manifest=put")

    async def set_metadata(
        self, key: str, metadata: Metadata, *, if_match: ETag | None = None
    ) -> ObjectMeta:
        loc = self._loc(key)
        where = self._where(key)
        if self.account_mode and loc.container and not loc.name:
            return await self._set_container_metadata(key, loc.container, metadata)
        headers = _meta_headers(metadata)

        def call(conn: sc.Connection) -> ObjectMeta:
            target = loc
            current = self._head_sync(conn, loc)
            if current is None and key.endswith("/"):
                bare = _Where(loc.container, loc.name.rstrip("/"))
                current = self._head_sync(conn, bare)
                if current is not None and _is_dir_type(current.headers.get("content-type")):
                    target = bare
                else:
                    current = None
            if current is None:
                raise NotFound(where)
            self._check_overwrite(current, if_match, where)
            # POST replaces every X-Object-Meta-* header; the data is untouched
            conn.post_object(target.container, target.name, headers=headers)
            after = self._head_sync(conn, target)
            if after is None:
                raise NotFound(where)
            return self._meta_from_head(key, after.headers)

        try:
            return await self._run("set_metadata", call)
        except Exception as exc:
            raise translate(exc, where) from exc

    async def _set_container_metadata(self, key: str, container: str,
                                      metadata: Metadata) -> ObjectMeta:
        headers = _meta_headers(metadata, "X-Container-Meta-")

        def call(conn: sc.Connection) -> None:
            # a container POST merges; removing a key takes X-Remove-Container-Meta-*
            current = _user_metadata(conn.head_container(container), _CONTAINER_META)
            removed = {f"X-Remove-Container-Meta-{k}": "x" for k in current if k not in metadata}
            conn.post_container(container, headers={**headers, **removed})

        try:
            await self._run("set_metadata", call)
        except Exception as exc:
            raise translate(exc, self._where(key)) from exc
        return await self.head(key)


def _total(content_range: str | None, got: int) -> int | None:
    if not content_range:
        return got
    total = content_range.rsplit("/", 1)[-1].strip()
    return int(total) if total.isdigit() else None


def _forget_request_body(conn: sc.Connection) -> None:
    """Let go of the body of the connection's last request.

    swiftclient's HTTPConnection keeps its last ``requests`` response, and the response its
    request, body included, until the connection's next request: every worker thread's
    connection would hold on to the last segment it sent (16 MiB each) for as long as the
    thread lives."""
    http = conn.http_conn[1] if conn.http_conn else None
    request = getattr(getattr(http, "resp", None), "request", None)
    if request is not None:
        request.body = None


class SwiftUpload(Upload):
    """A Static Large Object in the making: each part is one segment object, written when
    the part is; ``complete`` puts the manifest."""

    def __init__(self, backend: SwiftBackend, key: str, loc: _Where, segments: str, stem: str,
                 metadata: dict[str, str], part_size: int, content_type: str | None,
                 if_match: ETag | None, if_none_match: bool) -> None:
        self.backend = backend
        self.key = key
        self._loc = loc
        self._segments = segments
        self._stem = stem
        self._metadata = metadata
        self._headers = _meta_headers(metadata)
        self._part_size = part_size
        self._content_type = content_type
        self._if_match = if_match
        self._if_none_match = if_none_match
        #: part number -> (segment name, md5, size)
        self._parts: dict[int, tuple[str, str, int]] = {}
        self._done = False

    def _where(self) -> str:
        return self.backend._where(self.key)

    async def write_part(self, number: int, data: bytes) -> None:
        if self._done:
            raise StorefsError(f"{self._where()}: upload already finished")
        if not 1 <= number <= self.backend.capabilities.max_parts:
            raise ConfigError(f"{self._where()}: part number {number} out of range "
                              f"(Swift manifests hold {self.backend.capabilities.max_parts})")
        name = f"{self._stem}/{number:08d}"

        def call(conn: sc.Connection) -> str:
            # hashed in the worker thread: 16 MiB of MD5 would stall the trio loop ~30 ms
            md5 = hashlib.md5(data).hexdigest()
            etag = conn.put_object(self._segments, name, data, etag=md5)
            if _unquote(etag) != md5:
                raise IntegrityError(f"{self._where()}: segment {number} stored with another MD5")
            return md5

        try:
            md5 = await self.backend._run("upload_part", call)
        except Exception as exc:
            raise translate(exc, f"{self._where()} part {number}") from exc
        self._parts[number] = (name, md5, len(data))

    async def complete(self) -> ObjectMeta:
        numbers = sorted(self._parts)
        if numbers != list(range(1, len(numbers) + 1)):
            raise StorefsError(f"{self._where()}: upload is missing parts (have {numbers})")
        for n in numbers[:-1]:
            if self._parts[n][2] != self._part_size:
                raise StorefsError(f"{self._where()}: part {n} is not {self._part_size} bytes")
        # Swift refuses zero-byte segments; an empty last part adds nothing anyway
        used = [n for n in numbers if self._parts[n][2] > 0]
        if not used:
            await self.abort()
            return await self.backend.put(self.key, b"", self._metadata,
                                          content_type=self._content_type,
                                          if_match=self._if_match,
                                          if_none_match=self._if_none_match)
        manifest: list[dict[str, Any]] = [{"path": f"/{self._segments}/{self._parts[n][0]}",
                     "etag": self._parts[n][1], "size_bytes": self._parts[n][2]} for n in used]
        expected = hashlib.md5("".join(self._parts[n][1] for n in used).encode()).hexdigest()
        headers = dict(self._headers)
        if self._if_none_match:
            headers["If-None-Match"] = "*"
        loc, where = self._loc, self._where()

        def call(conn: sc.Connection) -> ObjectMeta:
            old = None if self._if_none_match else self.backend._head_with_segments_sync(conn, loc)
            self.backend._check_overwrite(old, self._if_match, where)
            etag = conn.put_object(loc.container, loc.name, json.dumps(manifest),
                                   content_type=self._content_type, headers=headers,
                                   query_string="multipart-manifest=put")
            if _unquote(etag) != expected:
                raise IntegrityError(f"{where}: Swift assembled the segments into another ETag")
            self.backend._after_overwrite(conn, loc, old, keep=[str(m["path"]) for m in manifest])
            found = self.backend._head_sync(conn, loc)
            if found is None:
                raise TransientError(f"{where}: the new object is not visible yet")
            return self.backend._meta_from_head(self.key, found.headers)

        try:
            meta = await self.backend._run("complete_upload", call)
        except Exception as exc:
            raise translate(exc, where, exists_error=self._if_none_match) from exc
        self._done = True
        # segments written but left out (empty parts) are garbage
        for n in numbers:
            if n not in used:
                await self._delete_segment(self._parts[n][0])
        return meta

    async def _delete_segment(self, name: str) -> None:
        def call(conn: sc.Connection) -> None:
            with contextlib.suppress(sc.ClientException):
                conn.delete_object(self._segments, name)

        await self.backend._run("delete", call)

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        parts, self._parts = self._parts, {}
        async with fan_out() as nursery:
            for name, _, _ in parts.values():
                nursery.start_soon(self._delete_segment, name)


# -- construction -----------------------------------------------------------------------------


def _from_env(table: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for setting, names in table.items():
        for name in names:
            value = os.environ.get(name)
            if value:
                out[setting] = value
                break
    return out


def settings_for(options: Mapping[str, str]) -> dict[str, str]:
    """The effective settings: ``-o`` options over the environment over the config file."""
    settings = dict(config.section("swift"))
    unknown = sorted(set(settings) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"config file, section swift: unknown setting {unknown[0]!r}")
    env = _from_env(_ST_ENV) if os.environ.get("ST_AUTH") else _from_env(_OS_ENV)
    if os.environ.get("ST_AUTH") and "auth_version" not in env:
        env["auth_version"] = "1"
    settings.update(env)
    settings.update(_from_env(_TOKEN_ENV))
    settings.update(options)
    return settings




def connection_kwargs(settings: Mapping[str, str]) -> dict[str, Any]:
    """swiftclient ``Connection`` arguments for the settings; ``AuthError`` when there are
    no credentials at all."""
    timeout = positive("swift", "timeout", settings.get("timeout", "60"))
    common: dict[str, Any] = {
        "retries": 0,
        "timeout": timeout,
        "insecure": "insecure" in settings and flag("swift", "insecure", settings["insecure"]),
        "cacert": settings.get("cacert") or None,
    }
    os_options: dict[str, str] = {}
    for setting in ("user_id", "user_domain_name", "user_domain_id", "project_name",
                    "project_id", "project_domain_name", "project_domain_id",
                    "application_credential_id", "application_credential_secret"):
        if settings.get(setting):
            os_options[setting] = settings[setting]
    if settings.get("region"):
        os_options["region_name"] = settings["region"]
    interface = settings.get("interface", "public").lower().removesuffix("url")
    if interface not in ("public", "internal", "admin"):
        raise ConfigError(f"swift: interface={settings['interface']!r}: expected public, "
                          f"internal or admin")
    os_options["endpoint_type"] = interface
    if settings.get("storage_url"):
        os_options["object_storage_url"] = settings["storage_url"]
    auth_type = settings.get("auth_type", "").lower().replace("_", "")
    if settings.get("application_credential_id") or auth_type == "v3applicationcredential":
        auth_type = "v3applicationcredential"
        os_options["auth_type"] = auth_type
    elif auth_type not in ("", "password", "v3password", "v2password"):
        raise ConfigError(f"swift: auth_type={settings['auth_type']!r}: expected password or "
                          f"v3applicationcredential")

    auth_url = settings.get("auth_url")
    if settings.get("auth_token") and settings.get("storage_url") and not auth_url:
        return {**common, "preauthurl": settings["storage_url"],
                "preauthtoken": settings["auth_token"], "os_options": os_options}
    if not auth_url:
        raise AuthError("swift: no credentials: source your OpenStack RC file (OS_AUTH_URL, "
                        "OS_USERNAME, OS_PASSWORD...), or set ST_AUTH, ST_USER and ST_KEY, "
                        "or pass -o auth_url=...")
    version = settings.get("auth_version", "").strip().lower().removeprefix("v")
    if not version:
        version = "1" if auth_url.rstrip("/").endswith(("/auth/v1.0", "/v1.0")) else "3"
    if version in ("1", "1.0"):
        version = "1"
    elif version in ("2", "2.0"):
        version = "2.0"
    elif version == "3":
        pass
    else:
        raise ConfigError(f"swift: auth_version={settings['auth_version']!r}: "
                          f"expected 1, 2 or 3")
    user, key = settings.get("username"), settings.get("password")
    if auth_type == "v3applicationcredential":
        if not (settings.get("application_credential_id")
                and settings.get("application_credential_secret")):
            raise AuthError("swift: application credentials need both "
                            "OS_APPLICATION_CREDENTIAL_ID and OS_APPLICATION_CREDENTIAL_SECRET")
        version = "3"
    elif not (user or settings.get("user_id")) or not key:
        missing = "ST_USER/ST_KEY" if version == "1" else "OS_USERNAME/OS_PASSWORD"
        raise AuthError(f"swift: {auth_url} needs a user name and a password ({missing})")
    if version == "3":
        return {**common, "session": _keystone_session(settings, auth_url, timeout),
                "auth_version": "3", "os_options": os_options}
    if version == "2.0" and settings.get("project_name"):
        os_options["tenant_name"] = settings["project_name"]
    return {**common, "authurl": auth_url, "user": user, "key": key,
            "auth_version": version, "os_options": os_options,
            "tenant_name": os_options.get("tenant_name")}


def _keystone_session(settings: Mapping[str, str], auth_url: str, timeout: float) -> Any:
    """A keystoneauth1 session for Keystone v3 (password or application credential).

    swiftclient takes it instead of user and key: every thread's Connection then shares
    one token (fetched lazily, on the first request: nothing here touches the network),
    and swiftclient's own path through python-keystoneclient, which passes deprecated
    arguments, is not used."""
    try:
        from keystoneauth1 import session as ksa_session
        from keystoneauth1.identity import v3
    except ImportError as exc:
        raise ConfigError("swift: Keystone auth needs keystoneauth1: "
                          "pip install 'storefs[swift]'") from exc
    url = auth_url.rstrip("/")
    if not url.endswith("/v3"):
        url += "/v3"  # a versionless identity URL, as swiftclient accepts it
    auth: Any
    auth_type = settings.get("auth_type", "").lower().replace("_", "")
    if settings.get("application_credential_id") or auth_type == "v3applicationcredential":
        auth = v3.ApplicationCredential(
            auth_url=url,
            application_credential_id=settings.get("application_credential_id"),
            application_credential_secret=settings.get("application_credential_secret", ""))
    else:
        domain: dict[str, Any] = {}
        for kind in ("user", "project"):
            name, ident = settings.get(f"{kind}_domain_name"), settings.get(f"{kind}_domain_id")
            if name:
                domain[f"{kind}_domain_name"] = name
            elif ident:
                domain[f"{kind}_domain_id"] = ident
            else:
                domain[f"{kind}_domain_id"] = "default"  # what a one-domain cloud uses
        auth = v3.Password(
            auth_url=url, username=settings.get("username"), user_id=settings.get("user_id"),
            password=settings.get("password", ""), project_name=settings.get("project_name"),
            project_id=settings.get("project_id"), **domain)
    verify: bool | str = not ("insecure" in settings
                              and flag("swift", "insecure", settings["insecure"]))
    if verify and settings.get("cacert"):
        verify = settings["cacert"]
    return ksa_session.Session(auth=auth, verify=verify, timeout=timeout)


def open_backend(source: Source, options: Mapping[str, str]) -> SwiftBackend:
    """Build the backend from the source, ``-o`` options, environment and config file."""
    settings = settings_for(options)
    kwargs = connection_kwargs(settings)
    return SwiftBackend(
        source.bucket,
        source.prefix,
        kwargs,
        auth_url=settings.get("auth_url") or settings.get("storage_url"),
        segment_container=settings.get("segment_container") or None,
        connections=int(positive("swift", "connections", settings.get("connections", "8"),
                                  integer=True)),
    )
