"""``http://HOST/PATH/`` and ``https://HOST/PATH/``: a read-only tree served by a web server.

Any static file server whose directories answer with an index page: nginx (best with
``autoindex_format json``), Apache's mod_autoindex, Python's ``http.server``, and the like.
Keys map onto URLs below the source (``a/b.txt`` -> ``https://HOST/PATH/a/b.txt``, each
name percent-encoded); a directory is a URL ending in ``/``.  How the interface maps:

``head``
    ``HEAD``.  A directory is a URL whose answer comes from a path ending in ``/``: asked
    for ``a/b``, servers redirect (301) to ``a/b/``, and redirects are followed.  Files:
    size from ``Content-Length``, mtime from ``Last-Modified``, content type, and the
    version (``ObjectMeta.etag``) is the server's ``ETag``; a server without ETags gets a
    version made of ``Last-Modified`` and size (``t<mtime hex>-<size hex>``, never sent to
    the server).  Directories have no size or version; their mtime is the one their parent's
    JSON listing showed, else ``Last-Modified``, else the time the backend was made.
    A server that refuses ``HEAD`` (405, 501) is asked ``GET`` of byte 0 instead.
``list_page``
    ``GET`` of the directory URL, parsed by ``http_index``: nginx's JSON autoindex
    (detected by ``Content-Type``; exact sizes and mtimes) or the links of an HTML index
    page.  One request gives the whole directory, sorted here by key; ``limit`` and tokens
    still work (the token is the last key returned).  A directory that is not there (404),
    or a page with no entries in it, is an empty listing.  JSON entries come
    ``metadata_complete`` once the backend has seen how the server forms ETags (nginx
    makes them from mtime and size, so the listing's entries carry exactly the ETag a
    ``HEAD`` would give); until then, and for every HTML entry (whose size the page does not
    say exactly), the filesystem asks ``HEAD``.
``get_range``
    ``GET`` with ``Range: bytes=a-b`` and ``Accept-Encoding: identity``.  Version checks:
    ``If-Match`` and ``If-Range`` with an ETag the server itself sent for this key;
    ``If-Unmodified-Since`` for versions made from an mtime; and in every case the
    answer's own ETag / Last-Modified / size are compared with the version asked for, so a
    server that ignores conditions still never mixes two versions (``PreconditionFailed``).
    A server that ignores ``Range`` answers ``200`` with the whole file: the bytes before
    the range are read and dropped, the connection is closed after it, so memory stays
    bounded (time does not: each page then costs a read from the start of the file).
writes
    none: every write method raises ``ReadOnly`` (``capabilities.read_only``).

Credentials (HTTP basic ``username``/``password``) and extra headers (``header=``) go only
to the source's own scheme, host and port, never to a host a redirect points to.  They are never
logged, and ``describe`` shows the user name at most.  TLS: ``ca_bundle`` is the only trust
store when given (``SSL_CERT_FILE`` and friends, which some machines set, do not override
it); else the system's (``SSL_CERT_FILE`` honoured); ``insecure`` verifies nothing.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import re
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import httpx
import trio
from cachetools import LRUCache

from storefs import __version__
from storefs import config as config_file
from storefs.backends._http_reads import use_large_reads
from storefs.backends._options import flag, positive
from storefs.backends.base import (
    Backend,
    Capabilities,
    ETag,
    ListPage,
    Metadata,
    MiB,
    ObjectMeta,
    Upload,
)
from storefs.backends.http_errors import reason, status_error, tls_problem, transport_error
from storefs.backends.http_index import (
    Entry,
    http_date,
    is_html,
    is_json,
    parse_html_index,
    parse_json_index,
)
from storefs.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    IntegrityError,
    IsADirectory,
    NotFound,
    PreconditionFailed,
    ReadOnly,
    StorefsError,
    TooLarge,
    TransientError,
    Unsupported,
)
from storefs.source import Source

log = logging.getLogger(__name__)

OPTIONS: dict[str, str] = {
    "ca_bundle": "PEM file of the CA certificates to trust, instead of the system's "
                 "(SSL_CERT_FILE and the like do not override it)",
    "insecure": "do not verify the server's TLS certificate (default off)",
    "timeout": "seconds a request may wait for the server (default 60)",
    "connections": "HTTP connections to keep open (default 16)",
    "username": "HTTP basic authentication: user name (default: the URL's, if any)",
    "password": "HTTP basic authentication: password (better in the config file than on "
                "the command line, where ps shows it)",
    "header": "extra request header Name:Value sent to the source's host; several "
              "separated by '|'",
}

#: most bytes of one index page read (a directory of some 500,000 entries)
MAX_INDEX_BYTES = 64 * MiB
MAX_REDIRECTS = 8
#: the bytes of a file, never a compressed form of them: sizes and ranges count those
_IDENTITY = {"Accept-Encoding": "identity"}
_ACCEPT_INDEX = {"Accept": "application/json, text/html;q=0.9, */*;q=0.5"}
#: a redirect's page is read (so the connection can be reused) when it is this small
_SMALL_BODY = 64 * 1024
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_TOTAL_RANGE = re.compile(r"/\s*(\d+)\s*$")
_NGINX_ETAG = re.compile(r'^"([0-9a-f]+)-([0-9a-f]+)"$')
_SYNTHETIC = re.compile(r"^t([0-9a-f]+)-([0-9a-f]+)$")
_SIZE_ONLY = re.compile(r"^s([0-9a-f]+)$")

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: how the server forms ETags, as seen on file answers so far
EtagForm = Literal["unknown", "nginx", "none", "other"]


# -- versions ---------------------------------------------------------------------------


def nginx_etag(mtime: float, size: int) -> str:
    """The ETag nginx gives a static file: ``"<mtime hex>-<size hex>"``."""
    return f'"{int(mtime):x}-{size:x}"'


def synthetic_etag(mtime: float | None, size: int) -> ETag:
    """The version of a file whose server sends no ETag.  Not a quoted entity-tag, so it
    can never be sent to (or confused with one from) the server."""
    return ETag(f"t{int(mtime):x}-{size:x}" if mtime is not None else f"s{size:x}")


def implied(etag: str) -> tuple[int, int] | None:
    """The (mtime, size) a version is made of, when it is ours or nginx-shaped."""
    m = _SYNTHETIC.match(etag) or _NGINX_ETAG.match(etag)
    return (int(m.group(1), 16), int(m.group(2), 16)) if m else None


def same_version(expected: str, etag: str | None, mtime: float | None,
                 size: int | None) -> bool:
    """Whether an answer with these ``ETag``, ``Last-Modified`` and total size shows the
    version ``expected``; where the answer cannot tell, it is taken as the same."""
    m = _SYNTHETIC.match(expected)
    if m:
        return (mtime is None or int(mtime) == int(m.group(1), 16)) and \
            (size is None or size == int(m.group(2), 16))
    m = _SIZE_ONLY.match(expected)
    if m:
        return size is None or size == int(m.group(1), 16)
    if etag == expected:
        return True
    said = implied(expected)
    if said is not None and mtime is not None and size is not None:
        # nginx-shaped: a listing's guess at the server's ETag may have been wrong about
        # its format while the mtime and size it was made of are the file's
        return (int(mtime), size) == said
    return etag is None  # an answer without an ETag says nothing against it


def _strong(etag: str) -> bool:
    return etag.startswith('"') and etag.endswith('"') and len(etag) >= 2


# -- settings ---------------------------------------------------------------------------


@dataclass
class Settings:
    """Everything ``open_backend`` gathered; no network yet."""

    #: ``https://host:port`` (no user info)
    origin: str
    #: the mounted directory's URL path, percent-encoded, ending in ``/``
    base_path: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    ca_bundle: str | None = None
    insecure: bool = False
    timeout: float = 60.0
    connections: int = 16

    @property
    def url(self) -> str:
        return self.origin + self.base_path


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="", errors="surrogateescape")


def _parse_headers(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (p.strip() for p in text.split("|")):
        if not item:
            continue
        name, colon, value = item.partition(":")
        name = name.strip()
        # the value may be a secret (a bearer token): never repeat it in messages
        if not colon or not _TOKEN.match(name):
            raise ConfigError(f"http: header {name[:40]!r}: expected Name:Value")
        if any(c in value for c in "\r\n\0"):
            raise ConfigError(f"http: header {name}: the value may not hold line breaks")
        out[name] = value.strip()
    return out


def settings_from(source: Source, options: Mapping[str, str],
                  section: Mapping[str, str] | None = None) -> Settings:
    """Gather the settings for ``source`` (``-o`` options over the config file's ``http``
    section); raises ``ConfigError`` with a one-line reason."""
    sect = config_file.section("http") if section is None else section
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"http: unknown option {unknown[0]!r}")

    def get(name: str) -> str | None:
        value = options.get(name)
        return value if value is not None else sect.get(name)

    url = urllib.parse.urlsplit(source.raw)
    if url.query or url.fragment or source.raw.rstrip("/").endswith(("?", "#")):
        raise ConfigError(f"http: {source.scheme}://{url.hostname}...: a mount source "
                          "takes no query string or fragment")
    if url.password:
        raise ConfigError("http: put the password in -o password= or the config file, not "
                          "in the URL (mount tables and ps would show it)")
    try:
        port = url.port
    except ValueError:
        raise ConfigError(f"http: {url.hostname}: invalid port") from None
    host = url.netloc.rpartition("@")[2].lower()
    if port is not None and _DEFAULT_PORTS[source.scheme] == port:
        host = host.rpartition(":")[0]
    origin = f"{source.scheme}://{host}"
    names = [urllib.parse.unquote(p, errors="surrogateescape") for p in source.path.split("/")
             if p]
    base_path = "/" + "".join(_quote(n) + "/" for n in names)

    username = get("username") or (urllib.parse.unquote(url.username) if url.username
                                   else None)
    password = get("password")
    if password and not username:
        raise ConfigError("http: password given without a username (-o username=)")
    ca_bundle = get("ca_bundle") or None
    if ca_bundle is not None:
        path = Path(ca_bundle).expanduser()
        if not path.is_file():
            raise ConfigError(f"http: ca_bundle={ca_bundle}: no such file")
        ca_bundle = str(path)
    insecure = flag("http", "insecure", get("insecure") or "false")
    if insecure and ca_bundle:
        raise ConfigError("http: ca_bundle and insecure contradict each other; pick one")
    return Settings(
        origin=origin, base_path=base_path, username=username, password=password or None,
        headers=_parse_headers(get("header") or ""), ca_bundle=ca_bundle, insecure=insecure,
        timeout=positive("http", "timeout", get("timeout") or "60"),
        connections=int(positive("http", "connections", get("connections") or "16",
                                 integer=True)),
    )


def tls_context(settings: Settings) -> ssl.SSLContext | bool:
    """What httpx verifies the server with.  An explicit ``ca_bundle`` is made into a
    context here because httpx, given ``verify=True``, prefers ``$SSL_CERT_FILE`` to
    anything else; a context is used as it is."""
    if settings.insecure:
        return False
    if settings.ca_bundle:
        try:
            return ssl.create_default_context(cafile=settings.ca_bundle)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"http: ca_bundle={settings.ca_bundle}: not a PEM file of "
                              f"certificates ({getattr(exc, 'reason', None) or exc})") from exc
    return True


# -- the backend ------------------------------------------------------------------------


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """``bytes 6-10/11`` -> (6, 11); the total is None when the server says ``*``."""
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None
    return int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))


def _origin_of(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def _length(headers: httpx.Headers) -> int | None:
    value = headers.get("content-length", "")
    return int(value) if value.isdigit() else None


async def _abandon(resp: httpx.Response, chunks: AsyncIterator[bytes] | None) -> None:
    """Stop reading a response body half-way.

    httpx/httpcore read bodies through a stack of async generators; one left suspended is
    reported by trio when it is collected (a ``ResourceWarning``), and ``aclose`` of the
    outer one does not reach the inner ones.  Closing the response first and then asking
    for the next piece makes the innermost read fail, which finishes every generator."""
    with trio.move_on_after(5) as scope:
        scope.shield = True
        await resp.aclose()
        if chunks is not None:
            with contextlib.suppress(httpx.HTTPError, httpx.StreamError):
                async for _ in chunks:
                    pass


@contextlib.asynccontextmanager
async def _body(resp: httpx.Response, what: str, *, raw: bool) -> AsyncIterator[
        AsyncIterator[bytes]]:
    """The pieces of ``resp``'s body (``raw``: as sent; else with Content-Encoding
    undone), for the block to read as far as it likes; the response is closed after it
    however the block ends, and a failed read is a storefs error."""
    chunks = resp.aiter_raw() if raw else resp.aiter_bytes()
    try:
        yield chunks
    except httpx.HTTPError as exc:
        raise transport_error(exc, what) from exc
    finally:
        # a body read to its end is released as well (its generators are finished)
        await _abandon(resp, chunks)


class HttpBackend(Backend):
    """A read-only HTTP(S) tree; see the module docstring for what maps to what."""

    def __init__(self, settings: Settings, *, page_size: int = 1_000_000,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """``page_size``: the default listing page (tests make it small so paging is
        exercised); ``transport``: what carries requests (tests pass a mock)."""
        self.settings = settings
        self._transport = transport
        self.client: httpx.AsyncClient | None = None
        self.started = time.time()
        self.etag_form: EtagForm = "unknown"
        #: the ETag the server last sent for a key: only such ETags go into If-Match
        self._server_etags: LRUCache[str, str] = LRUCache(maxsize=50_000)
        #: directory mtimes seen in listings (a HEAD of a directory has none)
        self._dir_mtimes: LRUCache[str, float] = LRUCache(maxsize=50_000)
        self._auth = (httpx.BasicAuth(settings.username, settings.password or "")
                      if settings.username else None)
        self.requests: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.bytes_in = 0
        self.ranges_ignored = 0
        self.capabilities = Capabilities(
            name="http",
            real_directories=True,
            server_side_copy=False,
            cheap_rename=False,
            metadata_update=False,
            conditional_put=False,
            conditional_get=True,
            max_metadata_size=0,
            ordered_listing=True,
            read_only=True,
            list_page_size=max(1, page_size),
        )

    def describe(self) -> str:
        who = f" as {self.settings.username}" if self.settings.username else ""
        return f"{self.settings.url}{who}"

    def _shown(self, key: str) -> str:
        """A key as a readable URL, for messages (decoded names, no credentials)."""
        return f"{self.settings.url}{key}"

    # -- connection ---------------------------------------------------------------------

    def _ensure_client(self) -> httpx.AsyncClient:
        if self.client is not None:
            return self.client
        s = self.settings
        if s.insecure:
            log.warning("http: %s: TLS certificate verification is off (-o insecure)", s.url)
        n = max(1, s.connections)
        use_large_reads()
        self.client = httpx.AsyncClient(
            verify=tls_context(s),
            timeout=httpx.Timeout(s.timeout, connect=min(s.timeout, 15.0), pool=None),
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n,
                                keepalive_expiry=60.0),
            headers={"User-Agent": f"storefs/{__version__}"},
            # redirects are followed by _send, which keeps credentials on their origin
            follow_redirects=False,
            transport=self._transport,
        )
        return self.client

    async def connect(self) -> None:
        """One ``GET`` of the mounted directory: an unreachable host, a refused
        certificate, a missing directory or refused credentials fail before mounting."""
        s = self.settings
        try:
            resp = await self._send("GET", self._url(""), what=f"GET {s.url}",
                                    headers=_ACCEPT_INDEX, raw_errors=True)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        await _abandon(resp, None)
        status = resp.status_code
        if status < 300 and not resp.url.path.endswith("/"):
            raise ConfigError(f"http: {s.url} is redirected to a file ({resp.url.path}), "
                              "not a directory")
        if status < 300:
            log.info("http: connected to %s (%s)", self.describe(),
                     resp.headers.get("server", "server unnamed"))
            return
        if status == 401:
            if self._auth is None:
                raise AuthError(f"http: {s.url} wants credentials (401); pass -o username=,"
                                "password= (HTTP basic) or -o header=")
            raise AuthError(f"http: {s.url} refused the credentials of {s.username} (401)")
        if status == 403:
            raise AuthError(f"http: {s.url}: access denied (403 Forbidden)")
        if status in (404, 410):
            await self._not_a_directory()
            raise NotFound(f"http: {s.url} does not exist ({status} "
                           f"{resp.reason_phrase or 'Not Found'})")
        raise ConnectError(f"http: {s.url}: the server answered {status} "
                           f"{resp.reason_phrase}".rstrip())

    async def _not_a_directory(self) -> None:
        """Raise ``ConfigError`` when the source names a file (a directory URL of it 404s)."""
        s = self.settings
        if s.base_path == "/":
            return
        url = s.origin + s.base_path.rstrip("/")
        try:
            resp = await self._send("HEAD", url, what=f"HEAD {url}", headers=_IDENTITY)
        except StorefsError:
            return
        await self._finish(resp)
        if resp.status_code < 300 and not resp.url.path.endswith("/"):
            raise ConfigError(f"http: {url} is a file, not a directory: mount the directory "
                              "that holds it")

    def _unreachable(self, exc: httpx.HTTPError) -> ConnectError:
        s = self.settings
        problem = tls_problem(exc)
        if isinstance(problem, ssl.SSLCertVerificationError):
            detail = problem.verify_message or "not trusted"
            hint = ("is it the CA that signed the server's certificate?" if s.ca_bundle
                    else "pass -o ca_bundle=FILE with its CA, or -o insecure for a test "
                         "server")
            return ConnectError(f"http: the TLS certificate of {s.origin} is refused "
                                f"({detail}); {hint}")
        if problem is not None:
            detail = getattr(problem, "reason", None) or type(problem).__name__
            plain = " (is it a plain http:// server?)" if "WRONG_VERSION" in str(detail) \
                else ""
            return ConnectError(f"http: TLS handshake with {s.origin} failed: "
                                f"{detail}{plain}")
        if isinstance(exc, httpx.TimeoutException):
            return ConnectError(f"http: {s.origin} did not answer within {s.timeout:g}s")
        return ConnectError(f"http: cannot reach {s.origin}: {reason(exc)}")

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    # -- requests -----------------------------------------------------------------------

    def _url(self, key: str) -> str:
        return self.settings.url + "/".join(_quote(n) for n in key.split("/"))

    def _own(self, url: str) -> bool:
        """Whether ``url`` is on the source's scheme, host and port (credentials go only
        there)."""
        return _origin_of(url) == _origin_of(self.settings.origin)

    def _count(self, table: dict[str, int], name: str) -> None:
        table[name] = table.get(name, 0) + 1

    async def _send(self, method: str, url: str, *, what: str,
                    headers: Mapping[str, str] | None = None,
                    raw_errors: bool = False) -> httpx.Response:
        """Send a request, following redirects; returns the final answer with its body
        unread (the caller closes it).  Transport failures become storefs errors unless
        ``raw_errors``."""
        client = self._ensure_client()
        for _ in range(MAX_REDIRECTS + 1):
            own = self._own(url)
            sent = dict(self.settings.headers) if own else {}
            sent.update(headers or {})
            request = client.build_request(method, url, headers=sent)
            self._count(self.requests, method)
            try:
                resp = await client.send(request, stream=True,
                                         auth=self._auth if own else None)
            except httpx.HTTPError as exc:
                self._count(self.errors, type(exc).__name__)
                if raw_errors:
                    raise
                raise transport_error(exc, what) from exc
            if resp.status_code >= 400:
                self._count(self.errors, str(resp.status_code))
            if not resp.has_redirect_location:
                return resp
            url = urllib.parse.urljoin(str(resp.url), resp.headers["location"])
            await self._finish(resp)
        raise StorefsError(f"http: {what}: more than {MAX_REDIRECTS} redirects")

    async def _finish(self, resp: httpx.Response) -> None:
        """Done with an answer whose body does not matter: a small one (or a HEAD's, which
        has none) is read so the connection goes back to the pool, a large one is dropped
        with its connection."""
        length = _length(resp.headers)
        if resp.request.method == "HEAD" or (length is not None and length <= _SMALL_BODY):
            try:
                with contextlib.suppress(httpx.HTTPError):
                    await resp.aread()
            finally:
                await resp.aclose()
            return
        await _abandon(resp, None)

    def _fail(self, resp: httpx.Response, what: str) -> NoReturn:
        raise status_error(resp.status_code, resp.reason_phrase, what)

    # -- reads --------------------------------------------------------------------------

    def _learn(self, etag: str | None, mtime: float | None, size: int) -> None:
        """Note how the server forms ETags (from a file's answer), which decides what a
        JSON listing's entries can claim."""
        if etag is None:
            seen: EtagForm = "none" if mtime is not None else "other"
        elif mtime is not None and etag == nginx_etag(mtime, size):
            seen = "nginx"
        else:
            seen = "other"
        if self.etag_form == "unknown":
            self.etag_form = seen
            log.debug("http: %s forms ETags as %s", self.settings.origin, seen)
        elif self.etag_form != seen and self.etag_form != "other":
            log.debug("http: %s: ETags no longer look %s-like", self.settings.origin,
                      self.etag_form)
            self.etag_form = "other"

    def _file_meta(self, key: str, headers: httpx.Headers, size: int) -> ObjectMeta:
        mtime = http_date(headers.get("last-modified"))
        etag = headers.get("etag") or None
        self._learn(etag, mtime, size)
        if etag is not None:
            self._server_etags[key] = etag
        md5 = headers.get("content-md5")
        return ObjectMeta(key=key, size=size,
                          etag=ETag(etag) if etag is not None else synthetic_etag(mtime, size),
                          mtime=mtime if mtime is not None else self.started,
                          content_type=headers.get("content-type"),
                          checksums={"md5": md5} if md5 else {})

    def _dir_meta(self, key: str, headers: httpx.Headers | None = None) -> ObjectMeta:
        key = key if not key or key.endswith("/") else key + "/"
        mtime = self._dir_mtimes.get(key)
        if mtime is None and headers is not None:
            mtime = http_date(headers.get("last-modified"))
        return ObjectMeta(key=key, size=0, etag=ETag(""),
                          mtime=mtime if mtime is not None else self.started, is_dir=True)

    async def head(self, key: str) -> ObjectMeta:
        what = f"head {self._shown(key)}"
        resp = await self._send("HEAD", self._url(key), what=what, headers=_IDENTITY)
        await self._finish(resp)
        if resp.status_code in (405, 501):
            return await self._head_by_get(key)
        if resp.status_code >= 400:
            self._fail(resp, what)
        if resp.url.path.endswith("/"):
            return self._dir_meta(key, resp.headers)
        size = _length(resp.headers)
        if size is None:
            # a HEAD without Content-Length (generated content): byte 0 tells the size
            return await self._head_by_get(key)
        return self._file_meta(key, resp.headers, size)

    async def _head_by_get(self, key: str) -> ObjectMeta:
        """``head`` for servers that refuse HEAD or leave the size out of it."""
        what = f"head {self._shown(key)}"
        resp = await self._send("GET", self._url(key), what=what,
                                headers={**_IDENTITY, "Range": "bytes=0-0"})
        await _abandon(resp, None)
        if resp.status_code == 416:
            size: int | None = 0  # an empty file has no byte 0
        elif resp.status_code >= 400:
            self._fail(resp, what)
        elif resp.url.path.endswith("/"):
            return self._dir_meta(key, resp.headers)
        elif resp.status_code == 206:
            cr = _content_range(resp.headers.get("content-range"))
            size = cr[1] if cr else None
        else:
            size = _length(resp.headers)
        if size is None:
            raise Unsupported(f"http: {self._shown(key)}: the server does not say how large "
                              "it is")
        return self._file_meta(key, resp.headers, size)

    async def _read_index(self, dir_key: str) -> tuple[list[Entry], str]:
        """The entries of one directory's index page, and the kind of page."""
        what = f"list {self._shown(dir_key)}"
        resp = await self._send("GET", self._url(dir_key), what=what, headers=_ACCEPT_INDEX)
        pieces: list[bytes] = []
        async with _body(resp, what, raw=False) as chunks:
            if resp.status_code in (404, 410):
                return [], "none"
            if resp.status_code >= 400:
                self._fail(resp, what)
            if not resp.url.path.endswith("/"):
                return [], "none"  # redirected to something that is not a directory
            size = 0
            async for piece in chunks:
                size += len(piece)
                if size > MAX_INDEX_BYTES:
                    raise TooLarge(f"http: {what}: the index page is larger than "
                                   f"{MAX_INDEX_BYTES // MiB} MiB")
                pieces.append(piece)
        body = b"".join(pieces)
        self.bytes_in += len(body)
        ctype = resp.headers.get("content-type", "")
        if is_json(ctype):
            return parse_json_index(body), "json"
        if is_html(ctype):
            return parse_html_index(body, ctype, str(resp.url)), "html"
        log.debug("http: %s: a %s page is no index; listed as empty", what, ctype or "typeless")
        return [], "none"

    def _entry_meta(self, dir_key: str, entry: Entry, kind: str) -> ObjectMeta:
        key = dir_key + entry.name
        if entry.is_dir:
            key += "/"
            if entry.mtime is not None:
                self._dir_mtimes[key] = entry.mtime
            return self._dir_meta(key)
        if entry.size is None or entry.mtime is None:
            # an HTML page's entry: the HEAD that the filesystem makes says the rest
            return ObjectMeta(key=key, size=entry.size or 0, etag=ETag(""),
                              mtime=entry.mtime or self.started, metadata_complete=False)
        if kind == "json" and self.etag_form == "nginx":
            return ObjectMeta(key=key, size=entry.size, mtime=entry.mtime,
                              etag=ETag(nginx_etag(entry.mtime, entry.size)))
        return ObjectMeta(key=key, size=entry.size, mtime=entry.mtime,
                          etag=synthetic_etag(entry.mtime, entry.size),
                          metadata_complete=self.etag_form == "none")

    async def _list_dir(self, dir_key: str) -> list[ObjectMeta]:
        entries, kind = await self._read_index(dir_key)
        if kind == "json" and self.etag_form == "unknown":
            sample = next((e for e in entries if not e.is_dir and e.size is not None), None)
            if sample is not None:
                # one HEAD shows how the server makes ETags; then this listing and all
                # later ones are complete, and ls -l needs no HEAD per file
                with contextlib.suppress(StorefsError):
                    await self.head(dir_key + sample.name)
        out: list[ObjectMeta] = []
        for entry in entries:
            try:
                entry.name.encode("utf-8")
            except UnicodeEncodeError:
                # a name that is not UTF-8 could be listed but never looked up
                log.debug("http: %s: skipping a name that is not UTF-8: %r", dir_key,
                          entry.name)
                continue
            out.append(self._entry_meta(dir_key, entry, kind))
        out.sort(key=lambda m: m.key)
        return out

    async def list_page(
        self, prefix: str, *, delimiter: str = "/", token: str | None = None, limit: int = 0
    ) -> ListPage:
        limit = max(1, limit or self.capabilities.list_page_size)
        if prefix and not prefix.endswith("/"):
            raise ConfigError(f"http: listing prefix {prefix!r} must end in '/'")
        if delimiter == "":
            return await self._walk(prefix, token, limit)
        if delimiter != "/":
            raise Unsupported(f"http: listings delimited by {delimiter!r}")
        objects = await self._list_dir(prefix)
        if token is not None:
            objects = [o for o in objects if o.key > token]
        if len(objects) > limit:
            return ListPage(objects[:limit], [], objects[limit - 1].key)
        return ListPage(objects, [], None)

    async def _walk(self, prefix: str, token: str | None, limit: int) -> ListPage:
        """Every key below ``prefix``, depth first with each directory's entries in key
        order, which is key order overall.  The token is the last key returned."""
        out: list[ObjectMeta] = []
        # directories still to list, deepest last; each frame holds entries not yet given
        stack: list[list[ObjectMeta]] = [list(reversed(await self._list_dir(prefix)))]
        while stack and len(out) < limit:
            frame = stack[-1]
            if not frame:
                stack.pop()
                continue
            meta = frame.pop()
            # a directory sorting before the token holds only keys before it too, unless
            # the token is inside it
            if meta.is_dir and (token is None or token < meta.key
                                or token.startswith(meta.key)):
                stack.append(list(reversed(await self._list_dir(meta.key))))
            if token is None or meta.key > token:
                out.append(meta)
        more = any(stack)
        return ListPage(out, [], out[-1].key if more and out else None)

    async def get_range(
        self, key: str, start: int, end: int, *, if_match: ETag | None = None
    ) -> bytes:
        if end <= start:
            return b""
        if not if_match:
            if_match = None  # an empty version (a directory's) is no condition
        shown = self._shown(key)
        what = f"get {shown}"
        headers = {**_IDENTITY, "Range": f"bytes={start}-{end - 1}"}
        if if_match is not None:
            if _strong(if_match) and self._server_etags.get(key) == if_match:
                headers["If-Match"] = if_match
                headers["If-Range"] = if_match
            elif (m := _SYNTHETIC.match(if_match)) is not None:
                # ours, made of Last-Modified: the server can check that much itself
                headers["If-Unmodified-Since"] = email.utils.formatdate(int(m.group(1), 16),
                                                                        usegmt=True)
        resp = await self._send("GET", self._url(key), what=what, headers=headers)
        try:
            body_start, total = self._check_answer(resp, key, start, if_match)
        except BaseException:
            await _abandon(resp, None)
            raise
        if total is not None and start >= total:
            await _abandon(resp, None)
            return b""
        data = await self._read_range(resp, start - body_start, end - start, what)
        expected = (min(end, total) if total is not None else end) - start
        if len(data) < expected:
            raise TransientError(f"http: {what}: {len(data)} of {expected} bytes arrived")
        return data

    def _check_answer(self, resp: httpx.Response, key: str, start: int,
                      if_match: ETag | None) -> tuple[int, int | None]:
        """Where the answer's body starts in the file and the file's size; raises when
        the answer is an error or shows another version than ``if_match``."""
        shown = self._shown(key)
        status = resp.status_code
        if status == 412:
            raise PreconditionFailed(f"http: {shown} changed since it was opened")
        if status == 416:
            found = _TOTAL_RANGE.search(resp.headers.get("content-range", ""))
            total = int(found.group(1)) if found else None
            if if_match is not None and total is not None and \
                    not same_version(if_match, resp.headers.get("etag"),
                                     http_date(resp.headers.get("last-modified")), total):
                raise PreconditionFailed(f"http: {shown} changed since it was opened")
            return start, total if total is not None else start
        if status >= 400:
            self._fail(resp, f"get {shown}")
        if resp.url.path.endswith("/"):
            raise IsADirectory(f"http: {shown} is a directory")
        encoding = resp.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise IntegrityError(f"http: {shown}: the server sent it compressed "
                                 f"({encoding}) although asked not to")
        if status == 206:
            cr = _content_range(resp.headers.get("content-range"))
            if cr is None or cr[0] > start:
                raise TransientError(f"http: get {shown}: the server sent "
                                     f"{resp.headers.get('content-range')!r} for byte {start}")
            body_start, total = cr
        else:
            # the server ignored Range: the whole file follows
            self.ranges_ignored += 1
            body_start, total = 0, _length(resp.headers)
        etag = resp.headers.get("etag") or None
        mtime = http_date(resp.headers.get("last-modified"))
        if total is not None:
            self._learn(etag, mtime, total)
        if if_match is not None and not same_version(if_match, etag, mtime, total):
            now = etag or (synthetic_etag(mtime, total) if total is not None else "?")
            raise PreconditionFailed(f"http: {shown} changed since it was opened (version "
                                     f"{now}, not {if_match})")
        if etag is not None:
            self._server_etags[key] = etag
        return body_start, total

    async def _read_range(self, resp: httpx.Response, skip: int, want: int,
                          what: str) -> bytes:
        """``want`` bytes of the body after the first ``skip`` (read and dropped).  A body
        that ends soon after (a 206 for the range) is read to its end, so the connection
        stays usable; of a longer one (a whole file) the rest is not read."""
        length = _length(resp.headers)
        stop_early = length is None or length > skip + want + _SMALL_BODY
        pieces: list[bytes] = []
        have = 0
        async with _body(resp, what, raw=True) as chunks:
            async for chunk in chunks:
                self.bytes_in += len(chunk)
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                if chunk:
                    piece = chunk[:want - have]
                    pieces.append(piece)
                    have += len(piece)
                if have >= want and stop_early:
                    break
        return b"".join(pieces)

    # -- writes: none -------------------------------------------------------------------

    def _read_only(self, what: str) -> NoReturn:
        raise ReadOnly(f"http: cannot {what}: {self.settings.url} is a read-only HTTP tree")

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
        self._read_only(f"write {key}")

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
        self._read_only(f"write {key}")

    async def delete(self, key: str) -> None:
        self._read_only(f"delete {key}")

    async def delete_many(self, keys: Iterable[str]) -> None:
        self._read_only("delete")

    async def copy(
        self,
        src: str,
        dst: str,
        *,
        metadata: Metadata | None = None,
        if_match: ETag | None = None,
    ) -> ObjectMeta:
        self._read_only(f"copy {src} to {dst}")

    async def rename(self, src: str, dst: str) -> ObjectMeta:
        self._read_only(f"rename {src}")

    async def make_dir(self, key: str, metadata: Metadata) -> ObjectMeta:
        self._read_only(f"make directory {key}")

    async def remove_dir(self, key: str) -> None:
        self._read_only(f"remove directory {key}")

    async def set_metadata(
        self, key: str, metadata: Metadata, *, if_match: ETag | None = None
    ) -> ObjectMeta:
        self._read_only(f"change attributes of {key}")

    async def exchange(self, a: str, b: str) -> None:
        self._read_only(f"exchange {a} and {b}")

    # -- statistics ---------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        return {"requests": dict(self.requests), "errors": dict(self.errors),
                "bytes_in": self.bytes_in, "ranges_ignored": self.ranges_ignored,
                "etag_form": self.etag_form}


def open_backend(source: Source, options: Mapping[str, str]) -> HttpBackend:
    return HttpBackend(settings_from(source, options))
