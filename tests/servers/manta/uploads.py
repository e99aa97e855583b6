"""Multipart uploads of the test server (manta-protocol.md §5).

An upload is a record in the ``uploads`` table plus a real parts directory
``/LOGIN/uploads/<prefix>/<id>`` whose objects are the parts ``0``, ``1``...  Commit
checks the part etags, sizes, declared length and MD5, concatenates the part files into
the target's blob (hashing on the way) and removes the parts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from typing import TYPE_CHECKING, Any

from tests.servers.manta.errors import MantaError
from tests.servers.manta.store import Entry, now_ms

if TYPE_CHECKING:
    from tests.servers.manta.server import Handler

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PART = re.compile(r"^(0|[1-9][0-9]*)$")
_PREFIX_LEN = 3
_PROHIBITED = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")


def _invalid(message: str) -> MantaError:
    return MantaError("MultipartUploadInvalidArgument", message)


def handle_uploads(h: Handler, login: str, segs: list[str]) -> None:
    store = h.server.store
    method = h.command
    rest = segs[2:]
    if not rest:
        if method == "POST":
            h.op = "CreateUpload"
            _create(h, login)
            return
        if method in ("GET", "HEAD"):
            h.namespace(login, segs)
            return
        raise MantaError("MethodNotAllowed", f"{method} is not allowed on {h.norm}")
    h.authorize(login, "putobject", h.norm)
    if h.principal.user is not None:
        raise MantaError("AuthorizationFailed",
                         f"{login}/{h.principal.user} may not use multipart uploads")
    if _UUID.match(rest[0]):
        # /:login/uploads/<id>[/<part>] redirects to the parts directory
        h.op = "Redirect"
        if method == "DELETE":
            raise MantaError("MethodNotAllowed", f"DELETE is not allowed on {h.norm}")
        record = store.get_upload(rest[0])
        if record is None or len(rest) > 2:
            raise MantaError("ResourceNotFound", f"{h.norm} was not found")
        location = f"/{login}/uploads/{rest[0][:_PREFIX_LEN]}/{rest[0]}"
        if len(rest) == 2:
            location += f"/{rest[1]}"
        h.reply(301, {"Location": location})
        return
    if len(rest) < 2:
        if method in ("GET", "HEAD"):
            h.namespace(login, segs)
            return
        raise MantaError("MethodNotAllowed", f"{method} is not allowed on {h.norm}")
    record = store.get_upload(rest[1])
    if record is None or rest[0] != rest[1][:_PREFIX_LEN] or len(rest) > 3:
        raise MantaError("ResourceNotFound", f"{h.norm} was not found")
    if len(rest) == 2:
        if method in ("GET", "HEAD"):
            h.namespace(login, segs)
            return
        raise MantaError("MethodNotAllowed", f"{method} is not allowed on {h.norm}")
    leaf = rest[2]
    if leaf == "state":
        if method != "GET":
            raise MantaError("MethodNotAllowed", f"{method} is not allowed on {h.norm}")
        h.op = "GetUpload"
        h.reply(200, {"Content-Type": "application/json"}, json.dumps(_view(record)).encode())
    elif leaf == "commit" and method == "POST":
        h.op = "CommitUpload"
        _commit(h, record)
    elif leaf == "abort" and method == "POST":
        h.op = "AbortUpload"
        _abort(h, record)
    elif method == "PUT":
        h.op = "UploadPart"
        _part(h, record, leaf)
    elif method in ("GET", "HEAD"):
        h.namespace(login, segs)
    else:
        raise MantaError("MethodNotAllowed", f"{method} is not allowed on {h.norm}")


def _json_body(h: Handler, what: str) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body)."""
    assert h.body is not None
    try:
        req = json.loads(h.body.read_all() or b"{}")
    except ValueError as exc:
        raise _invalid(f"{what}: body is not JSON") from exc
    if not isinstance(req, dict):
        raise _invalid(f"{what}: body is not a JSON object")
    return req


def _view(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k not in ("commitParts", "login")}
    if out["state"] == "done":
        out.pop("partsDirectory", None)
    return out


def _create(h: Handler, login: str) -> None:
    store = h.server.store
    if h.principal.anonymous or h.principal.account != login:
        raise MantaError("AuthorizationFailed",
                         f"{h.principal.account or 'anonymous'} is not allowed to access "
                         f"{h.norm}")
    if h.principal.user is not None:
        raise MantaError("AuthorizationFailed",
                         f"{login}/{h.principal.user} may not use multipart uploads")
    req = _json_body(h, "cannot create upload")
    target = req.get("objectPath")
    if not isinstance(target, str) or not target:
        raise _invalid("cannot create upload: objectPath is required")
    headers = req.get("headers", {})
    if not isinstance(headers, dict):
        raise _invalid("cannot create upload: headers must be an object")
    headers = {str(k).lower(): v for k, v in headers.items()}
    for name in _PROHIBITED:
        if name in headers:
            raise _invalid(f"cannot create upload: {name} is not allowed")
    for name in ("content-length", "durability-level"):
        if name in headers and (not isinstance(headers[name], int)
                                or isinstance(headers[name], bool)):
            raise _invalid(f"cannot create upload: {name} must be a number")
    copies = headers.get("durability-level", 2)
    if not 1 <= copies <= 6:
        raise MantaError("InvalidDurabilityLevel", "durability-level must be between 1 and 6")
    segs = [s for s in target.split("/") if s]
    if len(segs) < 3 or segs[0] != login or segs[1] not in ("stor", "public"):
        raise _invalid(f"cannot create upload: {target} is not a valid object path")
    upload_id = str(uuid.uuid4())[:-1] + str(_PREFIX_LEN)
    prefix_dir = f"/{login}/uploads/{upload_id[:_PREFIX_LEN]}"
    parts_dir = f"{prefix_dir}/{upload_id}"
    with store.locked():
        if store.get(prefix_dir) is None:
            store.put_entry(Entry(prefix_dir, "directory", now_ms()))
        store.put_entry(Entry(parts_dir, "directory", now_ms()))
        store.put_upload({"id": upload_id, "login": login, "state": "created",
                          "partsDirectory": parts_dir, "targetObject": "/" + "/".join(segs),
                          "headers": headers, "numCopies": copies,
                          "creationTimeMs": now_ms()})
    h.reply(201, {"Content-Type": "application/json", "Location": parts_dir},
            json.dumps({"id": upload_id, "partsDirectory": parts_dir}).encode())


def _part(h: Handler, record: dict[str, Any], leaf: str) -> None:
    cfg = h.server.config
    if record["state"] != "created":
        raise MantaError("InvalidMultipartUploadState",
                         f"upload {record['id']} has already been finalized")
    if not _PART.match(leaf) or int(leaf) >= cfg.max_parts:
        raise _invalid(f"invalid part number {leaf}: must be 0..{cfg.max_parts - 1}")
    for name in ("durability-level", "x-durability-level", *_PROHIBITED):
        if name in h.h:
            raise _invalid(f"{name} is not allowed on an upload part")
    want_md5 = h._content_md5()
    path = f"{record['partsDirectory']}/{leaf}"
    tmp, size, md5 = h.receive_blob()
    store = h.server.store
    try:
        if want_md5 is not None and want_md5 != md5:
            raise MantaError("ContentMD5Mismatch",
                             f"Content-MD5 expected to be {want_md5}, but was {md5}")
        with store.locked():
            current = store.get_upload(record["id"])
            if current is None or current["state"] != "created":
                raise MantaError("InvalidMultipartUploadState",
                                 f"upload {record['id']} has already been finalized")
            old = store.get(path)
            entry = Entry(path, "object", now_ms(), {}, str(uuid.uuid4()), size, md5,
                          "application/octet-stream", 2, store.adopt(tmp))
            store.put_entry(entry)
        if old is not None:
            store.discard(old.blob)
    finally:
        tmp.unlink(missing_ok=True)
    h.reply(204, {"Etag": entry.etag or "", "Last-Modified": _date(entry.mtime),
                  "Computed-MD5": md5})


def _date(ms: int) -> str:
    from tests.servers.manta.server import http_date

    return http_date(ms)


def _remove_parts(h: Handler, record: dict[str, Any]) -> None:
    store = h.server.store
    parts_dir = record["partsDirectory"]
    with store.locked():
        for e in store.children(parts_dir, limit=100_000, marker=None, sort="name",
                                reverse=False, only=None):
            store.remove_entry(e)
        d = store.get(parts_dir)
        if d is not None:
            store.remove_entry(d)


def _commit(h: Handler, record: dict[str, Any]) -> None:
    store = h.server.store
    cfg = h.server.config
    parts = _json_body(h, "cannot commit upload").get("parts")
    if not isinstance(parts, list) or not 1 <= len(parts) <= cfg.max_parts \
            or not all(isinstance(p, str) for p in parts):
        raise _invalid(f"parts must be a list of 1 to {cfg.max_parts} etags")
    if record["state"] == "done":
        if record.get("result") == "aborted":
            raise MantaError("InvalidMultipartUploadState",
                             f"upload {record['id']} has already been aborted")
        if record.get("commitParts") != parts:
            raise MantaError("InvalidMultipartUploadState",
                             f"upload {record['id']} was committed with other parts")
        target = store.get(record["targetObject"])
        _commit_reply(h, record, target)
        return
    if record["state"] != "created":
        raise MantaError("InvalidMultipartUploadState",
                         f"upload {record['id']} is being finalized")
    entries = []
    for i, etag in enumerate(parts):
        e = store.get(f"{record['partsDirectory']}/{i}")
        if e is None or e.etag != etag:
            raise _invalid(f"[part {i}] invalid etag")
        entries.append(e)
    for i, e in enumerate(entries[:-1]):
        if e.size < cfg.min_part_size:
            raise _invalid(f"[part {i}] part is too small ({e.size} bytes)")
    total = sum(e.size for e in entries)
    headers = record["headers"]
    if "content-length" in headers and headers["content-length"] != total:
        raise _invalid(f"upload is {total} bytes, not the declared {headers['content-length']}")
    target_path = record["targetObject"]
    store.require_parent_dir(target_path)
    existing = store.get(target_path)
    if existing is not None and existing.is_dir:
        raise MantaError("OperationNotAllowedOnDirectory",
                         f"{target_path} is a directory: PUT is not allowed")
    record = {**record, "state": "finalizing", "type": "commit"}
    store.put_upload(record)
    md5 = hashlib.md5()
    for e in entries:
        assert e.blob is not None
        with open(store.blob_path(e.blob), "rb") as f:
            while piece := f.read(8 << 20):
                md5.update(piece)
    computed = base64.b64encode(md5.digest()).decode()
    if "content-md5" in headers and headers["content-md5"] != computed:
        store.put_upload({**{k: v for k, v in record.items() if k != "type"},
                          "state": "created"})
        raise _invalid(f"content-md5 {headers['content-md5']} does not match {computed}")
    kept = {k: str(v) for k, v in headers.items()
            if k.startswith("m-") or k in ("cache-control", "content-disposition",
                                           "role-tag", "surrogate-key")}
    with store.locked():
        old = store.get(target_path)
        # the parts' files become the object's segments: no copy of the bytes
        blob = store.compose([(e.blob or "", e.size) for e in entries])
        entry = Entry(target_path, "object", now_ms(), kept, str(uuid.uuid4()), total,
                      computed, str(headers.get("content-type", "application/octet-stream")),
                      record["numCopies"], blob)
        store.put_entry(entry)
        record = {**record, "state": "done", "result": "committed", "commitParts": parts,
                  "partsMD5Summary": computed}
        record.pop("type", None)
        store.put_upload(record)
    if old is not None:
        store.discard(old.blob)
    _remove_parts(h, record)
    _commit_reply(h, record, entry)


def _commit_reply(h: Handler, record: dict[str, Any], target: Entry | None) -> None:
    headers = {"Location": record["targetObject"],
               "Computed-MD5": record.get("partsMD5Summary", "")}
    if target is not None:
        headers["Etag"] = target.etag or ""
        headers["Last-Modified"] = _date(target.mtime)
    h.reply(201, headers)


def _abort(h: Handler, record: dict[str, Any]) -> None:
    store = h.server.store
    if record["state"] == "done":
        if record.get("result") == "committed":
            raise MantaError("InvalidMultipartUploadState",
                             f"upload {record['id']} has already been committed")
        h.reply(204)
        return
    _remove_parts(h, record)
    record = {**record, "state": "done", "result": "aborted"}
    store.put_upload(record)
    h.reply(204)
