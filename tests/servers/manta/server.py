"""A Manta-compatible storage server for tests and demos (manta-protocol.md §9).

Threaded stdlib HTTP/1.1 with keep-alive; bodies stream between the socket and files on
disk in 1 MiB pieces (``sendfile`` on the way out), so 1 GiB transfers take seconds and
RAM stays flat.  The namespace is in SQLite (``store.py``), auth in ``auth.py``,
multipart uploads in ``uploads.py``, the CloudAPI subset (§8) in ``cloudapi.py``.
``--v2`` makes it Manta v2 (``Server: Manta/2``, no SnapLinks, no ``jobs``).

Tests read request counts without credentials: ``GET /_admin/stats?prefix=/jill/stor/x``
returns ``{"ops": {"PutObject": n, ...}, "bytes_in": ..., "bytes_out": ...}`` for every
request whose path is under the prefix (``PutObject`` and ``UploadPart`` are the requests
that carry object data; ``PutMetadata`` is a header-only update).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import mimetypes
import os
import re
import socketserver
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.servers.manta.auth import ANONYMOUS, Principal, Verifier
from tests.servers.manta.errors import MantaError
from tests.servers.manta.http import Body, Stats
from tests.servers.manta.store import DIR_TYPE, ROOTS, Entry, Store, now_ms, parent_of

log = logging.getLogger("manta-server")

ROOT_MTIME = "2013-05-22T17:39:43.714Z"
#: headers kept with an entry besides m-* (replayed on GET/HEAD)
STORED_HEADERS = ("cache-control", "surrogate-key", "content-disposition", "role-tag",
                  "access-control-allow-origin", "access-control-allow-methods",
                  "access-control-expose-headers", "access-control-allow-headers",
                  "access-control-max-age")
MAX_M_HEADERS = 4096
MAX_DURABILITY = 6
DEFAULT_MAX_CONTENT_LENGTH = 5120 * 1024 * 1024
_QUOTED = re.compile(r'^"\w*"$')


@dataclass
class Config:
    root: Path
    verifier: Verifier
    version: int = 1
    #: If-None-Match: * always "matches" (restify quirk, §4.6)
    inm_star_quirk: bool = True
    dir_limit: int = 1_000_000
    min_part_size: int = 5 * 1024 * 1024
    max_parts: int = 800
    server_name: str = "storefs-test-manta"
    stats: Stats = field(default_factory=Stats)


def http_date(ms: int) -> str:
    return email.utils.formatdate(ms / 1000, usegmt=True)


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def parse_media(value: str) -> tuple[str, dict[str, str]]:
    base, *params = (p.strip() for p in value.split(";"))
    out = {}
    for p in params:
        k, _, v = p.partition("=")
        out[k.strip().lower()] = v.strip().strip('"')
    return base.lower(), out


def etag_list(value: str) -> list[str]:
    # restify strips quotes only from "\w*" values: a quoted UUID (hyphens) never matches
    out = []
    for token in value.split(","):
        t = token.strip()
        if _QUOTED.match(t):
            t = t[1:-1]
        out.append(t)
    return out


def normalise(raw: str) -> list[str]:
    """URL path -> decoded segments (``//`` collapsed, trailing ``/`` dropped)."""
    try:
        return [urllib.parse.unquote(s, errors="strict") for s in raw.split("/") if s]
    except UnicodeDecodeError as exc:
        raise MantaError("BadRequest", "path is not valid UTF-8") from exc


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: MantaHTTPServer
    # large socket reads for fast uploads
    rbufsize = 1 << 20
    # headers and body go out in separate writes: without TCP_NODELAY each small reply
    # waits for the client's delayed ACK (40 ms)
    disable_nagle_algorithm = True

    # -- plumbing -----------------------------------------------------------------------

    def version_string(self) -> str:
        return "Manta/2" if self.server.config.version == 2 else "Manta"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self.dispatch()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_GET

    def dispatch(self) -> None:
        self.started = time.monotonic()
        self.request_id = str(uuid.uuid4())
        self.h = {k.lower(): v for k, v in self.headers.items()}
        self.bytes_out = 0
        self.op = "Unknown"
        raw, _, query = self.path.partition("?")
        self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(query,
                                                                 keep_blank_values=True).items()}
        self.norm = raw
        self.principal: Principal = ANONYMOUS
        self.cloudapi = False
        self.body: Body | None = None
        self._record: int | None = None
        try:
            self.body = Body(self.rfile, self.h)
            if raw.startswith("/_admin/"):
                self.admin(raw)
            else:
                self.route(raw)
        except MantaError as err:
            if self.cloudapi:
                from tests.servers.manta import cloudapi

                cloudapi.send_error(self, err)
            else:
                self.send_error_reply(err)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            return
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self.send_error_reply(MantaError("InternalError", "internal error"))
        finally:
            received = self.body.received if self.body else 0
            if self._record is None:
                self.server.config.stats.add(self.op, self.norm, received, self.bytes_out)
            else:
                self.server.config.stats.update(self._record, received, self.bytes_out)
        # an unread body would be taken for the next request: drop it or close
        if self.body is not None and not self.body.drain(1 << 20):
            self.close_connection = True

    def send_response(self, code: int, message: str | None = None) -> None:
        # counted before the client can see the reply: a test that asks for the counts
        # right after its request finds it there (the bytes are filled in at the end)
        if getattr(self, "_record", 0) is None:  # 0: a reply outside dispatch (bad request)
            received = self.body.received if self.body else 0
            self._record = self.server.config.stats.add(self.op, self.norm, received, 0)
        super().send_response(code, message)

    def reply(self, status: int, headers: dict[str, str] | None = None,
              body: bytes = b"") -> None:
        self.send_response(status)
        self._common_headers()
        hdrs = dict(headers or {})
        if status not in (204, 304):
            hdrs.setdefault("Content-Length", str(len(body)))
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
            self.bytes_out += len(body)

    def _common_headers(self) -> None:
        self.send_header("x-request-id", self.request_id)
        self.send_header("x-response-time", str(int((time.monotonic() - self.started) * 1000)))
        self.send_header("x-server-name", self.server.config.server_name)
        if self.close_connection:
            self.send_header("Connection", "close")

    def send_error_reply(self, err: MantaError) -> None:
        body = json.dumps({"code": err.code, "message": err.message}).encode()
        if err.status == 304:
            self.reply(304, err.headers)
            return
        if self.body is not None and not self.body.done and not self.body.drain(1 << 20):
            # an unread upload of unknown size: answer, then hang up
            self.close_connection = True
        headers = {"Content-Type": "application/json",
                   "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
                   **err.headers}
        if self.command == "HEAD":
            headers["Content-Length"] = "0"
            self.reply(err.status, headers)
        else:
            self.reply(err.status, headers, body)

    def admin(self, raw: str) -> None:
        self.op = "Admin"
        if raw == "/_admin/ping":
            self.reply(200, {"Content-Type": "text/plain"}, b"ok")
        elif raw == "/_admin/stats":
            out = self.server.config.stats.summary(self.query.get("prefix", "/"))
            self.reply(200, {"Content-Type": "application/json"}, json.dumps(out).encode())
        else:
            raise MantaError("ResourceNotFound", f"{raw} was not found")

    # -- routing ------------------------------------------------------------------------

    def route(self, raw: str) -> None:
        cfg = self.server.config
        segs = normalise(raw)
        self.norm = "/" + "/".join(segs)
        from tests.servers.manta import cloudapi

        if segs == ["--ping"] or (len(segs) >= 2 and segs[1] in cloudapi.AREAS):
            self.cloudapi = True
            cloudapi.handle(self, segs)
            return
        principal = cfg.verifier.authenticate(self.command, self.path, self.request_version,
                                              self.h)
        self.principal = principal
        if not segs:
            raise MantaError("ResourceNotFound", f"{raw} was not found")
        login = segs[0]
        if login not in cfg.verifier.accounts:
            if principal.anonymous:
                raise MantaError("ResourceNotFound", f"{self.norm} was not found")
            raise MantaError("AuthorizationFailed",
                             f"{principal.account} is not allowed to access {self.norm}")
        if len(segs) == 1:
            self.root_listing(login)
            return
        area = segs[1]
        if area == "uploads":
            from tests.servers.manta.uploads import handle_uploads

            handle_uploads(self, login, segs)
        elif area in ("stor", "public", "reports"):
            self.namespace(login, segs)
        else:
            # jobs are irrelevant to a filesystem (§6): 404 on v1 and v2 alike
            raise MantaError("ResourceNotFound", f"{self.norm} was not found")

    def authorize(self, login: str, action: str, path: str, *, public_read: bool = False) -> None:
        if public_read and self.principal.anonymous:
            return
        self.server.config.verifier.authorize(self.principal, login, action, path)

    def root_listing(self, login: str) -> None:
        if self.command not in ("GET", "HEAD"):
            raise MantaError("OperationNotAllowedOnRootDirectory",
                             f"{self.norm} is not allowed on the root directory")
        self.op = "ListDirectory"
        self.authorize(login, "getdirectory", self.norm)
        names = ["jobs", "public", "reports", "stor", "uploads"]
        if self.server.config.version == 2:
            names.remove("jobs")
        limit = self._limit()
        marker = self.query.get("marker")
        if marker is not None:
            names = [n for n in names if n > marker]  # the root's marker is exclusive
        rows = [{"name": n, "type": "directory", "mtime": ROOT_MTIME} for n in names[:limit]]
        headers = {"Content-Type": DIR_TYPE, "Result-Set-Size": str(len(names))}
        if self.command == "HEAD":
            self.reply(200, {**headers, "Content-Length": "0"})
        else:
            self.stream_rows(headers, iter(rows))

    # -- the namespace ------------------------------------------------------------------

    def namespace(self, login: str, segs: list[str]) -> None:
        store = self.server.store
        path = self.norm
        public = segs[1] == "public"
        method = self.command
        is_root = len(segs) == 2
        if method in ("GET", "HEAD"):
            entry = store.get(path)
            if entry is None:
                self.op = "HeadObject" if method == "HEAD" else "GetObject"
                if not (public and self.principal.anonymous):
                    self.authorize(login, "getobject", path)
                raise MantaError("ResourceNotFound", f"{path} was not found")
            if entry.is_dir:
                self.op = "ListDirectory" if method == "GET" else "HeadDirectory"
                self.authorize(login, "getdirectory", path, public_read=public)
                self.get_directory(entry)
            else:
                self.op = "GetObject" if method == "GET" else "HeadObject"
                self.authorize(login, "getobject", path, public_read=public)
                self.get_object(entry)
            return
        if method == "PUT":
            ctype = self.h.get("content-type", "")
            base, params = parse_media(ctype)
            kind = params.get("type") if base in ("application/json",
                                                   "application/x-json-stream") else None
            if self.query.get("metadata") == "true":
                self.op = "PutMetadata"
                self.put_metadata(login, path, public)
            elif kind == "directory":
                self.op = "PutDirectory"
                self.authorize(login, "putdirectory", path)
                self.put_directory(login, path, public, is_root)
            elif kind == "link":
                self.op = "PutSnapLink"
                self.authorize(login, "putsnaplink", path)
                if is_root:
                    raise MantaError("OperationNotAllowedOnRootDirectory",
                                     f"{path} is a root directory")
                self.put_link(login, path)
            else:
                self.op = "PutObject"
                self.authorize(login, "putobject", path)
                if is_root:
                    raise MantaError("OperationNotAllowedOnRootDirectory",
                                     f"{path} is a root directory")
                self.put_object(login, path, public)
            return
        if method == "DELETE":
            self.op = "DeleteObject"
            if is_root:
                raise MantaError("OperationNotAllowedOnRootDirectory",
                                 f"{path} is a root directory")
            self.delete(login, path)
            return
        raise MantaError("MethodNotAllowed", f"{method} is not allowed on {path}")

    def stored_headers(self, login: str, public: bool) -> dict[str, str]:
        """m-* (first 4 KiB, the rest silently dropped) and the other kept headers."""
        out: dict[str, str] = {}
        used = 0
        for k, v in self.headers.items():
            name = k.lower()
            if name.startswith("m-"):
                used += len(name) + len(v)
                if used <= MAX_M_HEADERS:
                    out[name] = v
            elif name in STORED_HEADERS:
                out[name] = v
        if "role-tag" in out:
            roles = self.server.config.verifier.accounts[login].roles
            for tag in (t.strip() for t in out["role-tag"].split(",")):
                if tag and tag not in roles:
                    raise MantaError("InvalidRoleTag", f"Role tag {tag} is invalid")
        if public:
            out.setdefault("access-control-allow-origin", "*")
        return out

    def entry_headers(self, e: Entry) -> dict[str, str]:
        out = {"Last-Modified": http_date(e.mtime)}
        for k, v in e.headers.items():
            out[k] = v
        return out

    # -- reads --------------------------------------------------------------------------

    def _limit(self) -> int:
        raw = self.query.get("limit", "256")
        try:
            limit = int(raw)
        except ValueError:
            limit = -1
        if not 1 <= limit <= 1024:
            raise MantaError("InvalidArgumentError",
                             f"limit={raw} is invalid: must be between [1, 1024]")
        return limit

    def get_directory(self, e: Entry) -> None:
        store = self.server.store
        q = self.query
        only = None
        wants_dirs = "dir" in q or "directory" in q
        wants_objs = "obj" in q or "object" in q
        if wants_dirs and not wants_objs:
            only = "directory"
        elif wants_objs and not wants_dirs:
            only = "object"
        headers = {**self.entry_headers(e), "Content-Type": DIR_TYPE,
                   "Result-Set-Size": str(store.count_children(e.path, only))}
        if self.command == "HEAD":
            self.reply(200, {**headers, "Content-Length": "0"})
            return
        limit = self._limit()
        sort = q.get("sort", "name")
        if sort == "none":
            raise MantaError("QueryParameterForbidden", "sort=none is only for operators")
        if sort not in ("name", "mtime"):
            raise MantaError("InvalidParameter", f"sort={sort} is invalid")
        marker: str | int | None = q.get("marker")
        if sort == "mtime" and marker is not None:
            marker = self._parse_time(str(marker))
        rows = store.children(e.path, limit=limit, marker=marker, sort=sort,
                              reverse=q.get("sort_order") == "reverse", only=only)
        self.stream_rows(headers, (self.listing_row(r) for r in rows))

    @staticmethod
    def _parse_time(value: str) -> int:
        try:
            if value.endswith("Z"):
                value = value[:-1] + "+00:00"
            from datetime import datetime

            return int(datetime.fromisoformat(value).timestamp() * 1000)
        except ValueError:
            try:
                return int(email.utils.parsedate_to_datetime(value).timestamp() * 1000)
            except (TypeError, ValueError) as exc:
                raise MantaError("InvalidParameter", f"marker={value} is invalid") from exc

    @staticmethod
    def listing_row(e: Entry) -> dict[str, Any]:
        if e.is_dir:
            return {"name": e.name, "type": "directory", "mtime": iso(e.mtime)}
        row: dict[str, Any] = {"name": e.name, "etag": e.etag, "size": e.size,
                               "type": "object", "contentType": e.content_type,
                               "contentMD5": e.md5, "mtime": iso(e.mtime),
                               "durability": 0 if e.size == 0 else e.durability}
        if "content-disposition" in e.headers:
            row["contentDisposition"] = e.headers["content-disposition"]
        return row

    def stream_rows(self, headers: dict[str, str], rows: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self._common_headers()
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        buf = bytearray()
        for row in rows:
            buf += json.dumps(row, separators=(",", ":")).encode() + b"\n"
            if len(buf) > 65536:
                self._chunk(bytes(buf))
                buf.clear()
        if buf:
            self._chunk(bytes(buf))
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.bytes_out += len(data)

    def conditions(self, e: Entry | None, *, read: bool) -> None:
        """restify's conditionalRequest against the entry's Etag and Last-Modified."""
        etag = e.etag if e is not None else None
        extra = {"Etag": etag} if etag else {}
        if (im := self.h.get("if-match")) is not None:
            tags = etag_list(im)
            if "*" not in tags and (etag is None or etag not in tags):
                raise MantaError("PreconditionFailed",
                                 f"if-match '{im}' didn't match etag '{etag}'", extra)
        if (inm := self.h.get("if-none-match")) is not None:
            tags = etag_list(inm)
            star = "*" in tags and (self.server.config.inm_star_quirk or e is not None)
            if star or (etag is not None and etag in tags):
                if read:
                    raise MantaError("NotModified", "not modified", extra)
                raise MantaError("PreconditionFailed",
                                 f"if-none-match '{inm}' matched etag '{etag}'", extra)
        if e is None:
            return
        seconds = e.mtime // 1000
        if read and (ims := self.h.get("if-modified-since")) is not None:
            t = self._http_time(ims)
            if t is not None and seconds <= t:
                raise MantaError("NotModified", "not modified", extra)
        if (ius := self.h.get("if-unmodified-since")) is not None:
            t = self._http_time(ius)
            if t is not None and seconds > t:
                raise MantaError("PreconditionFailed", f"{self.norm} was modified", extra)

    @staticmethod
    def _http_time(value: str) -> int | None:
        try:
            return int(email.utils.parsedate_to_datetime(value).timestamp())
        except (TypeError, ValueError):
            return None

    def _acceptable(self, ctype: str) -> bool:
        accept = self.h.get("accept")
        if not accept:
            return True
        base = parse_media(ctype)[0] if "/" in ctype else "application/octet-stream"
        major, _, minor = base.partition("/")
        for r in accept.split(","):
            want = r.split(";")[0].strip().lower()
            wmajor, _, wminor = want.partition("/")
            if want in ("*", "*/*") or (wmajor == major and wminor in ("*", minor)):
                return True
        return False

    def get_object(self, e: Entry) -> None:
        if not self._acceptable(e.content_type):
            raise MantaError("NotAcceptable", f"{self.norm} is {e.content_type}")
        self.conditions(e, read=True)
        headers = {**self.entry_headers(e), "Etag": e.etag or "", "Content-Type": e.content_type,
                   "Durability-Level": str(e.durability)}
        rng = self.h.get("range") if self.command == "GET" else None
        if rng is None:
            headers["Content-MD5"] = e.md5 or ""
            headers["Content-Length"] = str(e.size)
            if e.size and self.command == "GET":
                headers["Accept-Ranges"] = "bytes"
            self._send_blob(200, headers, e, 0, e.size)
            return
        start, end = self._parse_range(rng, e.size)
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{e.size}"
        headers["Content-Length"] = str(end - start)
        self._send_blob(206, headers, e, start, end - start)

    @staticmethod
    def _parse_range(value: str, size: int) -> tuple[int, int]:
        unsatisfiable = MantaError("RequestedRangeNotSatisfiable",
                                   f"{value} is not satisfiable",
                                   {"Content-Range": f"bytes */{size}"})
        unit, _, spec = value.partition("=")
        if "," in spec:
            raise MantaError("NotImplemented", "multiple ranges are not supported")
        first, dash, last = spec.strip().partition("-")
        if unit.strip() != "bytes" or not dash:
            raise unsatisfiable
        try:
            if first == "":
                n = int(last)
                if n <= 0:
                    raise unsatisfiable
                start, end = max(0, size - n), size
            else:
                start = int(first)
                end = size if last == "" else min(int(last) + 1, size)
        except ValueError:
            raise unsatisfiable from None
        if start < 0 or start >= size or end <= start:
            raise unsatisfiable
        return start, end

    def _send_blob(self, status: int, headers: dict[str, str], e: Entry, offset: int,
                   count: int) -> None:
        self.send_response(status)
        self._common_headers()
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD" or count == 0 or e.blob is None:
            return
        sent = 0
        for path, size in self.server.store.segments(e.blob):
            length = os.path.getsize(path) if size is None else size
            if offset >= length:
                offset -= length
                continue
            n = min(count - sent, length - offset)
            with open(path, "rb") as f:
                done = self.connection.sendfile(f, offset, n)
            sent += done
            offset = 0
            if done != n or sent == count:
                break
        self.bytes_out += sent
        if sent != count:
            self.close_connection = True

    # -- writes -------------------------------------------------------------------------

    def _durability(self) -> int:
        raw = self.h.get("durability-level", self.h.get("x-durability-level"))
        if raw is None:
            return 2
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if not 1 <= n <= MAX_DURABILITY:
            raise MantaError("InvalidDurabilityLevel",
                             f"durability-level must be between 1 and {MAX_DURABILITY}")
        return n

    def _content_type(self) -> str:
        ctype = self.h.get("content-type") or "application/octet-stream"
        if "/" not in ctype:
            ctype = mimetypes.guess_type(f"x.{ctype}")[0] or "application/octet-stream"
        return ctype

    def _content_md5(self) -> str | None:
        raw = self.h.get("content-md5")
        if raw is None:
            return None
        try:
            if len(base64.b64decode(raw, validate=True)) != 16:
                raise ValueError(raw)
        except ValueError as exc:
            raise MantaError("BadRequest", "Content-MD5 invalid") from exc
        return raw

    def receive_blob(self, *, streaming_cap: int | None = None) -> tuple[Path, int, str]:
        """Stream the body into a temporary file: (path, size, base64 md5)."""
        body = self.body
        assert body is not None
        if not body.present:
            raise MantaError("ContentLengthRequired", "Content-Length or chunked is required")
        cap = streaming_cap
        if body.chunked and cap is None:
            raw = self.h.get("max-content-length")
            cap = DEFAULT_MAX_CONTENT_LENGTH
            if raw is not None:
                try:
                    cap = int(raw)
                except ValueError:
                    cap = -1
                if cap < 0:
                    raise MantaError("InvalidMaxContentLength",
                                     "max-content-length must be >= 0")
        tmp = self.server.store.new_tmp()
        md5 = hashlib.md5()
        size = 0
        try:
            with open(tmp, "wb", buffering=0) as f:
                for piece in body.chunks():
                    size += len(piece)
                    if body.chunked and cap is not None and size > cap:
                        raise MantaError("MaxContentLengthExceeded",
                                         f"request body is larger than {cap} bytes")
                    md5.update(piece)
                    f.write(piece)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, size, base64.b64encode(md5.digest()).decode()

    def _cas_headers(self) -> bool:
        return "if-match" in self.h or "if-none-match" in self.h

    def put_object(self, login: str, path: str, public: bool) -> None:
        store = self.server.store
        store.require_parent_dir(path)
        start = store.get(path)
        if start is not None and start.is_dir:
            raise MantaError("OperationNotAllowedOnDirectory",
                             f"{path} is a directory: PUT is not allowed")
        if start is None and store.count_children(parent_of(path), None) >= \
                self.server.config.dir_limit:
            raise MantaError("DirectoryLimitExceeded", f"{parent_of(path)} is full")
        self.conditions(start, read=False)
        headers = self.stored_headers(login, public)
        durability = self._durability()
        ctype = self._content_type()
        want_md5 = self._content_md5()
        tmp, size, md5 = self.receive_blob()
        try:
            if want_md5 is not None and want_md5 != md5:
                raise MantaError("ContentMD5Mismatch",
                                 f"Content-MD5 expected to be {want_md5}, but was {md5}")
            entry = self._commit(path, start, tmp, size, md5, ctype, durability, headers)
        finally:
            tmp.unlink(missing_ok=True)
        self.reply(204, {"Etag": entry.etag or "", "Last-Modified": http_date(entry.mtime),
                         "Computed-MD5": md5})

    def _commit(self, path: str, start: Entry | None, tmp: Path, size: int, md5: str,
                ctype: str, durability: int, headers: dict[str, str]) -> Entry:
        store = self.server.store
        with store.locked():
            store.require_parent_dir(path)
            current = store.get(path)
            if self._cas_headers() and (current and current.etag) != (start and start.etag):
                raise MantaError("ConcurrentRequest", f"{path} was changed concurrently")
            if current is not None and current.is_dir:
                raise MantaError("OperationNotAllowedOnDirectory",
                                 f"{path} is a directory: PUT is not allowed")
            entry = Entry(path, "object", now_ms(), headers, str(uuid.uuid4()), size, md5,
                          ctype, durability, store.adopt(tmp))
            store.put_entry(entry)
        if current is not None:
            store.discard(current.blob)
        return entry

    def put_directory(self, login: str, path: str, public: bool, is_root: bool) -> None:
        store = self.server.store
        if is_root and path.split("/")[2] == "uploads":
            raise MantaError("MethodNotAllowed", f"PUT is not allowed on {path}")
        headers = self.stored_headers(login, public)
        with store.locked():
            if not is_root:
                store.require_parent_dir(path)
            old = store.get(path)
            previous = {"Last-Modified": http_date(old.mtime)} if old is not None else {}
            if old is not None and old.etag:
                previous["Etag"] = old.etag
            if old is None or not old.is_dir or old.headers != headers:
                # PutDirectory onto an object silently replaces it (§3.1)
                store.put_entry(Entry(path, "directory", now_ms(), headers))
        if old is not None:
            store.discard(old.blob)
        self.reply(204, previous)

    def put_link(self, login: str, path: str) -> None:
        store = self.server.store
        if self.server.config.version == 2:
            raise MantaError("SnaplinksDisabledError", "Manta v2 does not support SnapLinks.")
        location = self.h.get("location")
        if not location:
            raise MantaError("LocationRequired", "Location header is required")
        segs = normalise(urllib.parse.urlsplit(location).path)
        if len(segs) < 3 or segs[1] not in ROOTS:
            raise MantaError("InvalidLink", f"{location} is not a valid link")
        src_path = "/" + "/".join(segs)
        src = store.get(src_path)
        if src is None:
            raise MantaError("SourceObjectNotFound", f"{src_path} was not found")
        if src.is_dir:
            raise MantaError("LinkNotObject", f"{src_path} is not an object")
        if segs[1] != "public":
            self.server.config.verifier.authorize(self.principal, segs[0], "getobject",
                                                  src_path)
        store.require_parent_dir(path)
        start = store.get(path)
        if start is not None and start.is_dir:
            raise MantaError("OperationNotAllowedOnDirectory",
                             f"{path} is a directory: PUT is not allowed")
        self.conditions(start, read=False)
        with store.locked():
            current = store.get(path)
            if self._cas_headers() and (current and current.etag) != (start and start.etag):
                raise MantaError("ConcurrentRequest", f"{path} was changed concurrently")
            src = store.get(src_path)
            if src is None or src.blob is None:
                raise MantaError("SourceObjectNotFound", f"{src_path} was not found")
            # a new object entry sharing the bytes, with the source's etag and headers
            store.put_entry(Entry(path, "object", now_ms(), dict(src.headers), src.etag,
                                  src.size, src.md5, src.content_type, src.durability,
                                  store.link_blob(src.blob)))
        if current is not None:
            store.discard(current.blob)
        self.reply(204, {"Etag": src.etag or "", "Last-Modified": http_date(src.mtime)})

    def put_metadata(self, login: str, path: str, public: bool) -> None:
        store = self.server.store
        for forbidden in ("content-length", "content-md5", "durability-level",
                          "x-durability-level"):
            value = self.h.get(forbidden)
            # real muskie refuses any Content-Length; an empty one is tolerated here (§4.2)
            if value is not None and not (forbidden == "content-length" and value == "0"):
                raise MantaError("InvalidUpdate", f'overwrite of "{forbidden}" forbidden')
        e = store.get(path)
        if e is None:
            raise MantaError("ResourceNotFound", f"{path} was not found")
        self.authorize(login, "putdirectory" if e.is_dir else "putobject", path)
        if not e.is_dir:
            self.conditions(e, read=False)
        headers = self.stored_headers(login, public)
        with store.locked():
            current = store.get(path)
            if current is None:
                raise MantaError("ResourceNotFound", f"{path} was not found")
            if not current.is_dir and "content-type" in self.h:
                current.content_type = self._content_type()
            current.headers = headers
            current.mtime = now_ms()
            store.put_entry(current)
        out = {"Last-Modified": http_date(current.mtime)}
        if current.etag:
            out["Etag"] = current.etag
        self.reply(204, out)

    def delete(self, login: str, path: str) -> None:
        store = self.server.store
        e = store.get(path)
        if e is None:
            self.authorize(login, "deleteobject", path)
            raise MantaError("ResourceNotFound", f"{path} was not found")
        if e.is_dir:
            self.op = "DeleteDirectory"
            self.authorize(login, "deletedirectory", path)
        else:
            self.authorize(login, "deleteobject", path)
            self.conditions(e, read=False)
        with store.locked():
            current = store.get(path)
            if current is None:
                raise MantaError("ResourceNotFound", f"{path} was not found")
            if current.is_dir and store.has_children(path):
                raise MantaError("DirectoryNotEmpty", f"{path} is not empty")
            store.remove_entry(current)
        self.reply(204)


class MantaHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], config: Config, store: Store, *,
                 verbose: bool = False, tls: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.store = store
        self.verbose = verbose
        self._cloud: dict[str, Any] = {}
        self._cloud_lock = threading.Lock()
        #: CloudAPI key names, by "login/user" then fingerprint
        self.key_names: dict[str, dict[str, str]] = {}
        super().__init__(address, Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    def cloud_state(self, login: str) -> Any:
        """The CloudAPI machines etc. of ``login`` (made on first use)."""
        from tests.servers.manta.cloudapi import CloudState

        with self._cloud_lock:
            if login not in self._cloud:
                host, port = self.server_address[:2]
                self._cloud[login] = CloudState(login, f"http://{host}:{port}")
            return self._cloud[login]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hangs up mid-response is not the server's failure
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError)):
            return
        socketserver.BaseServer.handle_error(self, request, client_address)
