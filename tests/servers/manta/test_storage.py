"""The test server's namespace, objects, SnapLinks and uploads against manta-protocol.md."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Iterator

import pytest

from tests.servers.fixture_manta import MantaServer
from tests.servers.manta.testing import Raw, code

DIR = {"Content-Type": "application/json; type=directory"}
MiB = 1024 * 1024


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture
def raw(manta_server: MantaServer) -> Iterator[Raw]:
    r = Raw(manta_server)
    yield r
    r.close()


@pytest.fixture
def d(raw: Raw) -> str:
    path = f"/jill/stor/srv-{uuid.uuid4().hex[:10]}"
    raw.mkdir(path)
    return path


def rows(resp: object) -> list[dict[str, object]]:
    return [json.loads(line) for line in resp.content.splitlines()]  # type: ignore[attr-defined]


def test_root_and_protected_directories(raw: Raw, manta_v2_server: MantaServer) -> None:
    root = raw.request("GET", "/jill")
    assert [r["name"] for r in rows(root)] == ["jobs", "public", "reports", "stor", "uploads"]
    assert {r["mtime"] for r in rows(root)} == {"2013-05-22T17:39:43.714Z"}
    # the root's marker is exclusive
    assert [r["name"] for r in rows(raw.request("GET", "/jill", params={"marker": "public"}))] \
        == ["reports", "stor", "uploads"]
    v2 = Raw(manta_v2_server)
    try:
        v2root = v2.request("GET", "/jill")
        assert "jobs" not in [r["name"] for r in rows(v2root)]
        assert v2root.headers["server"] == "Manta/2"
    finally:
        v2.close()
    for method, path, headers in (("PUT", "/jill", DIR), ("DELETE", "/jill/stor", {}),
                                  ("PUT", "/jill/stor", {}), ("DELETE", "/jill/public", {})):
        resp = raw.request(method, path, headers=headers)
        assert (resp.status_code, code(resp)) == (400, "OperationNotAllowedOnRootDirectory")
    assert raw.request("PUT", "/jill/stor", headers=DIR).status_code == 204
    assert raw.request("PUT", "/jill/uploads", headers=DIR).status_code == 405
    assert raw.request("POST", "/jill/stor/x").status_code == 405
    assert raw.request("GET", "/jill/nowhere").status_code == 404


def test_put_directory_rules(raw: Raw, d: str) -> None:
    assert raw.request("PUT", f"{d}/a", headers=DIR).status_code == 204
    # idempotent, never "already exists"
    assert raw.request("PUT", f"{d}/a", headers=DIR).status_code == 204
    missing = raw.request("PUT", f"{d}/no/such", headers=DIR)
    assert (missing.status_code, code(missing)) == (404, "DirectoryDoesNotExist")
    raw.put(f"{d}/obj", b"data")
    under = raw.request("PUT", f"{d}/obj/sub", headers=DIR)
    assert (under.status_code, code(under)) == (400, "ParentNotDirectory")
    # PutDirectory onto an object silently replaces it
    assert raw.request("PUT", f"{d}/obj", headers=DIR).status_code == 204
    head = raw.request("HEAD", f"{d}/obj")
    assert head.headers["content-type"] == "application/x-json-stream; type=directory"
    # both JSON base types route to PutDirectory
    stream = {"Content-Type": "application/x-json-stream; type=directory"}
    assert raw.request("PUT", f"{d}/b", headers=stream).status_code == 204


def test_listing(raw: Raw, d: str) -> None:
    names = [f"n{i:02d}" for i in range(12)]
    for n in names:
        raw.put(f"{d}/{n}", n.encode(), **{"Content-Type": "text/plain"})
    raw.mkdir(f"{d}/sub")
    before = raw.request("HEAD", d).headers["last-modified"]
    listing = raw.request("GET", d, params={"limit": "5"})
    assert listing.headers["result-set-size"] == "13"
    assert listing.headers["content-type"] == "application/x-json-stream; type=directory"
    assert listing.headers["transfer-encoding"] == "chunked"
    first = rows(listing)
    assert [r["name"] for r in first] == names[:5]
    obj = first[0]
    assert set(obj) == {"name", "etag", "size", "type", "contentType", "contentMD5", "mtime",
                        "durability"}
    assert (obj["type"], obj["size"], obj["contentType"], obj["contentMD5"], obj["durability"]) \
        == ("object", 3, "text/plain", md5(b"n00"), 2)
    assert str(obj["mtime"]).endswith("Z") and "." in str(obj["mtime"])
    # the marker is inclusive
    page = rows(raw.request("GET", d, params={"limit": "3", "marker": "n04"}))
    assert [r["name"] for r in page] == ["n04", "n05", "n06"]
    last = rows(raw.request("GET", d, params={"marker": "n11"}))
    assert [r["name"] for r in last] == ["n11", "sub"]
    assert last[1] == {"name": "sub", "type": "directory", "mtime": last[1]["mtime"]}
    rev = rows(raw.request("GET", d, params={"sort_order": "reverse", "limit": "2"}))
    assert [r["name"] for r in rev] == ["sub", "n11"]
    newest = rows(raw.request("GET", d, params={"sort": "mtime", "limit": "1"}))
    assert newest[0]["name"] == "sub"
    only_dirs = rows(raw.request("GET", d, params={"dir": "true"}))
    assert [r["name"] for r in only_dirs] == ["sub"]
    for bad in ("0", "1025", "x"):
        resp = raw.request("GET", d, params={"limit": bad})
        assert (resp.status_code, code(resp)) == (400, "InvalidArgumentError")
        assert resp.json()["message"] == f"limit={bad} is invalid: must be between [1, 1024]"
    assert code(raw.request("GET", d, params={"sort": "none"})) == "QueryParameterForbidden"
    assert len(rows(raw.request("GET", d))) == 13  # default limit 256
    # adding and removing children leaves the directory's mtime alone
    raw.put(f"{d}/late", b"x")
    raw.request("DELETE", f"{d}/late")
    assert raw.request("HEAD", d).headers["last-modified"] == before


def test_delete_rules(raw: Raw, d: str) -> None:
    raw.put(f"{d}/f", b"x")
    full = raw.request("DELETE", d)
    assert (full.status_code, code(full)) == (400, "DirectoryNotEmpty")
    assert raw.request("DELETE", f"{d}/f").status_code == 204
    gone = raw.request("DELETE", f"{d}/f")
    assert (gone.status_code, code(gone)) == (404, "ResourceNotFound")
    assert raw.request("DELETE", d).status_code == 204


def test_put_object(raw: Raw, d: str, manta_server: MantaServer) -> None:
    data = os.urandom(3 * MiB + 17)
    first = raw.put(f"{d}/o", data, **{"Content-MD5": md5(data)})
    assert first.headers["computed-md5"] == md5(data)
    second = raw.put(f"{d}/o", data)
    # a fresh UUID etag on every PUT, even of the same bytes
    assert first.headers["etag"] != second.headers["etag"]
    uuid.UUID(second.headers["etag"])
    bad = raw.request("PUT", f"{d}/o", content=b"abc", headers={"Content-MD5": md5(b"abd")})
    assert (bad.status_code, code(bad)) == (400, "ContentMD5Mismatch")
    invalid = raw.request("PUT", f"{d}/o", content=b"abc", headers={"Content-MD5": "zz"})
    assert (invalid.status_code, code(invalid)) == (400, "BadRequest")
    assert raw.request("GET", f"{d}/o").content == data  # failed PUTs changed nothing
    chunks = [b"a" * 1000, b"b" * 2000]
    chunked = raw.request("PUT", f"{d}/c", content=iter(chunks))
    assert chunked.status_code == 204
    assert chunked.headers["computed-md5"] == md5(b"".join(chunks))
    capped = raw.request("PUT", f"{d}/c2", content=iter(chunks),
                         headers={"Max-Content-Length": "1500"})
    assert (capped.status_code, code(capped)) == (413, "MaxContentLengthExceeded")
    durability = raw.request("PUT", f"{d}/c3", content=b"x", headers={"Durability-Level": "9"})
    assert code(durability) == "InvalidDurabilityLevel"
    on_dir = raw.request("PUT", d, content=b"x")
    assert code(on_dir) == "OperationNotAllowedOnDirectory"
    no_parent = raw.request("PUT", f"{d}/nope/x", content=b"x")
    assert (no_parent.status_code, code(no_parent)) == (404, "DirectoryDoesNotExist")
    stats = manta_server.stats(d + "/")
    assert stats["ops"]["PutObject"] >= 5
    assert stats["bytes_in"] >= 2 * len(data)


def test_metadata_headers_and_update(raw: Raw, d: str, manta_server: MantaServer) -> None:
    raw.put(f"{d}/m", b"payload", **{"m-mode": "33188", "m-Uid": "1000",
                                     "Content-Type": "text/plain", "Cache-Control": "no-cache"})
    head = raw.request("HEAD", f"{d}/m")
    assert (head.headers["m-mode"], head.headers["m-uid"]) == ("33188", "1000")
    assert head.headers["cache-control"] == "no-cache"
    before = manta_server.stats(f"{d}/m")["ops"].get("PutObject", 0)
    upd = raw.request("PUT", f"{d}/m", params={"metadata": "true"},
                      headers={"m-mode": "33261"}, content=iter([]))
    assert upd.status_code == 204
    assert upd.headers["etag"] == head.headers["etag"]  # data and etag untouched
    after = raw.request("GET", f"{d}/m")
    assert after.content == b"payload"
    assert after.headers["m-mode"] == "33261"
    # a full replace: what was not resent is gone, the content type is kept
    assert "m-uid" not in after.headers and "cache-control" not in after.headers
    assert after.headers["content-type"] == "text/plain"
    assert manta_server.stats(f"{d}/m")["ops"].get("PutObject", 0) == before
    for header in ({"Content-Length": "3"}, {"Content-MD5": md5(b"")},
                   {"Durability-Level": "2"}):
        body = b"abc" if "Content-Length" in header else iter([])
        resp = raw.request("PUT", f"{d}/m", params={"metadata": "true"}, headers=header,
                           content=body)
        assert (resp.status_code, code(resp)) == (400, "InvalidUpdate")
    missing = raw.request("PUT", f"{d}/none", params={"metadata": "true"}, content=iter([]))
    assert missing.status_code == 404
    # about 4 KiB of m-* headers are kept; the rest is dropped without an error
    many = {f"m-k{i:03d}": "v" * 90 for i in range(60)}
    raw.put(f"{d}/big", b"x", **many)
    kept = [k for k in raw.request("HEAD", f"{d}/big").headers if k.startswith("m-k")]
    assert 0 < len(kept) < 60
    assert sum(len(k) + 90 for k in kept) <= 4096


def test_get_ranges_and_negotiation(raw: Raw, d: str) -> None:
    data = bytes(range(256)) * 4
    raw.put(f"{d}/r", data)
    whole = raw.request("GET", f"{d}/r")
    assert whole.headers["content-md5"] == md5(data)
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["durability-level"] == "2"
    for spec, (a, b) in {"bytes=10-19": (10, 20), "bytes=1000-": (1000, 1024),
                         "bytes=-24": (1000, 1024), "bytes=1000-5000": (1000, 1024)}.items():
        part = raw.request("GET", f"{d}/r", headers={"Range": spec})
        assert part.status_code == 206, spec
        assert part.content == data[a:b]
        assert part.headers["content-range"] == f"bytes {a}-{b - 1}/1024"
        assert "content-md5" not in part.headers and "accept-ranges" not in part.headers
    multi = raw.request("GET", f"{d}/r", headers={"Range": "bytes=0-1,5-6"})
    assert (multi.status_code, code(multi)) == (501, "NotImplemented")
    past = raw.request("GET", f"{d}/r", headers={"Range": "bytes=2000-3000"})
    assert past.status_code == 416 and past.headers["content-range"] == "bytes */1024"
    raw.put(f"{d}/empty", b"")
    empty = raw.request("GET", f"{d}/empty")
    assert empty.content == b"" and "accept-ranges" not in empty.headers
    assert empty.headers["content-md5"] == "1B2M2Y8AsgTpgAmY7PhCfg=="
    assert raw.request("GET", f"{d}/r", headers={"Accept": "text/html"}).status_code == 406
    assert raw.request("GET", f"{d}/r", headers={"Accept": "application/*"}).status_code == 200


def test_conditional_requests(raw: Raw, d: str) -> None:
    etag = raw.put(f"{d}/c", b"one").headers["etag"]
    stale = raw.request("PUT", f"{d}/c", content=b"x", headers={"If-Match": str(uuid.uuid4())})
    assert (stale.status_code, code(stale)) == (412, "PreconditionFailed")
    # a quoted UUID never matches (restify strips quotes only from "\w*")
    quoted = raw.request("PUT", f"{d}/c", content=b"x", headers={"If-Match": f'"{etag}"'})
    assert quoted.status_code == 412
    ok = raw.request("PUT", f"{d}/c", content=b"two", headers={"If-Match": etag})
    assert ok.status_code == 204
    new = ok.headers["etag"]
    assert raw.request("GET", f"{d}/c", headers={"If-None-Match": new}).status_code == 304
    assert raw.request("GET", f"{d}/c", headers={"If-Match": etag}).status_code == 412
    # the If-None-Match: * quirk: even a path that does not exist "matches"
    star = raw.request("PUT", f"{d}/brand-new", content=b"x", headers={"If-None-Match": "*"})
    assert star.status_code == 412
    # create-if-absent the way that works: a random etag
    made = raw.request("PUT", f"{d}/brand-new", content=b"x",
                       headers={"If-None-Match": str(uuid.uuid4())})
    assert made.status_code == 204
    assert raw.request("PUT", f"{d}/c", content=b"y", headers={"If-Match": "*"}).status_code \
        == 204
    gone = raw.request("DELETE", f"{d}/c", headers={"If-Match": new})
    assert gone.status_code == 412
    # directories ignore conditions
    raw.mkdir(f"{d}/sub")
    assert raw.request("DELETE", f"{d}/sub",
                       headers={"If-Match": str(uuid.uuid4())}).status_code == 204


def test_snaplinks_v1_and_v2(raw: Raw, d: str, manta_v2_server: MantaServer) -> None:
    src = raw.put(f"{d}/src", b"shared bytes", **{"m-mode": "33188"})
    link = {"Content-Type": "application/json; type=link", "Location": f"{d}/src"}
    made = raw.request("PUT", f"{d}/dst", headers={**link, "m-mode": "1"})
    assert made.status_code == 204
    assert made.headers["etag"] == src.headers["etag"]
    dst = raw.request("GET", f"{d}/dst")
    # the link is an object with the source's bytes, etag and headers (m-* on it ignored)
    assert (dst.content, dst.headers["etag"], dst.headers["m-mode"]) == \
        (b"shared bytes", src.headers["etag"], "33188")
    raw.put(f"{d}/src", b"overwritten")
    raw.request("DELETE", f"{d}/src")
    assert raw.request("GET", f"{d}/dst").content == b"shared bytes"
    missing = raw.request("PUT", f"{d}/x", headers={**link, "Location": f"{d}/src"})
    assert (missing.status_code, code(missing)) == (404, "SourceObjectNotFound")
    raw.mkdir(f"{d}/dir")
    not_obj = raw.request("PUT", f"{d}/x", headers={**link, "Location": f"{d}/dir"})
    assert (not_obj.status_code, code(not_obj)) == (400, "LinkNotObject")
    no_loc = raw.request("PUT", f"{d}/x", headers={"Content-Type": link["Content-Type"]})
    assert (no_loc.status_code, code(no_loc)) == (400, "LocationRequired")
    v2 = Raw(manta_v2_server)
    try:
        v2.mkdir(d)
        v2.put(f"{d}/src", b"x")
        off = v2.request("PUT", f"{d}/dst", headers={**link, "Location": f"{d}/src"})
        assert (off.status_code, code(off)) == (403, "SnaplinksDisabledError")
        assert off.json()["message"] == "Manta v2 does not support SnapLinks."
    finally:
        v2.close()


def test_multipart_upload(raw: Raw, d: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"]
    whole = b"".join(parts)
    made = raw.request("POST", "/jill/uploads", json={
        "objectPath": f"{d}/big",
        "headers": {"content-length": len(whole), "content-md5": md5(whole), "m-mode": "33188",
                    "content-type": "application/x-tar"}})
    assert made.status_code == 201, made.text
    upload_id, parts_dir = made.json()["id"], made.json()["partsDirectory"]
    assert parts_dir == f"/jill/uploads/{upload_id[:3]}/{upload_id}"
    assert upload_id.endswith("3")
    etags = []
    for i, p in enumerate(parts):
        resp = raw.request("PUT", f"{parts_dir}/{i}", content=p)
        assert resp.status_code == 204
        assert resp.headers["computed-md5"] == md5(p)
        etags.append(resp.headers["etag"])
    assert [r["name"] for r in rows(raw.request("GET", parts_dir))] == ["0", "1", "2"]
    moved = raw.request("GET", f"/jill/uploads/{upload_id}/2")
    assert moved.status_code == 301 and moved.headers["location"] == f"{parts_dir}/2"
    assert raw.request("DELETE", f"/jill/uploads/{upload_id}").status_code == 405
    for bad_part in ("800", "01", "-1"):
        resp = raw.request("PUT", f"{parts_dir}/{bad_part}", content=b"x")
        assert (resp.status_code, code(resp)) == (409, "MultipartUploadInvalidArgument")
    wrong = raw.request("POST", f"{parts_dir}/commit", json={"parts": [etags[0], "x", etags[2]]})
    assert code(wrong) == "MultipartUploadInvalidArgument" and "[part 1]" in wrong.text
    state = raw.request("GET", f"{parts_dir}/state").json()
    assert (state["state"], state["targetObject"]) == ("created", f"{d}/big")
    done = raw.request("POST", f"{parts_dir}/commit", json={"parts": etags})
    assert done.status_code == 201, done.text
    assert (done.headers["location"], done.headers["computed-md5"]) == (f"{d}/big", md5(whole))
    got = raw.request("GET", f"{d}/big")
    assert hashlib.md5(got.content).digest() == hashlib.md5(whole).digest()
    assert (got.headers["m-mode"], got.headers["content-type"]) == ("33188", "application/x-tar")
    assert raw.request("POST", f"{parts_dir}/commit", json={"parts": etags}).status_code == 201
    final = raw.request("GET", f"{parts_dir}/state").json()
    assert (final["state"], final["result"]) == ("done", "committed")
    assert "partsDirectory" not in final and final["partsMD5Summary"] == md5(whole)
    late = raw.request("PUT", f"{parts_dir}/3", content=b"x")
    assert code(late) in ("InvalidMultipartUploadState", "ResourceNotFound")
    assert code(raw.request("POST", f"{parts_dir}/abort")) == "InvalidMultipartUploadState"


def test_multipart_limits_and_abort(raw: Raw, d: str) -> None:
    made = raw.request("POST", "/jill/uploads", json={"objectPath": f"{d}/small"}).json()
    parts_dir = made["partsDirectory"]
    etags = [raw.request("PUT", f"{parts_dir}/{i}", content=b"tiny").headers["etag"]
             for i in range(2)]
    small = raw.request("POST", f"{parts_dir}/commit", json={"parts": etags})
    assert code(small) == "MultipartUploadInvalidArgument" and "too small" in small.text
    assert code(raw.request("POST", f"{parts_dir}/commit", json={"parts": []})) == \
        "MultipartUploadInvalidArgument"
    assert raw.request("POST", f"{parts_dir}/abort").status_code == 204
    assert raw.request("POST", f"{parts_dir}/abort").status_code == 204
    after = raw.request("POST", f"{parts_dir}/commit", json={"parts": etags[:1]})
    assert code(after) == "InvalidMultipartUploadState"
    assert raw.request("HEAD", f"{d}/small").status_code == 404
    for body in ({}, {"objectPath": ""}, {"objectPath": f"{d}/x", "headers": {"if-match": "a"}},
                 {"objectPath": f"{d}/x", "headers": {"content-length": "12"}}):
        resp = raw.request("POST", "/jill/uploads", json=body)
        assert (resp.status_code, code(resp)) == (409, "MultipartUploadInvalidArgument"), body
