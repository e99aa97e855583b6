"""The test server's HTTP Signature checks against manta-protocol.md §1 (raw requests)."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator

import pytest

from tests.servers.fixture_manta import MantaServer
from tests.servers.manta.testing import Raw, code, signature


@pytest.fixture
def raw(manta_server: MantaServer) -> Iterator[Raw]:
    r = Raw(manta_server)
    yield r
    r.close()


@pytest.mark.parametrize(("key", "algorithm", "user", "role"), [
    ("rsa", "rsa-sha1", None, None),
    ("rsa", "rsa-sha256", None, None),
    ("rsa", "rsa-sha512", None, None),
    ("ecdsa", "ecdsa-sha256", None, None),
    ("ecdsa", "ecdsa-sha512", None, None),
    ("bob", "ecdsa-sha512", "bob", "reader"),
])
def test_supported_algorithms_verify(manta_server: MantaServer, key: str, algorithm: str,
                                     user: str | None, role: str | None) -> None:
    r = Raw(manta_server, key, algorithm=algorithm, user=user, role=role)
    try:
        resp = r.request("GET", "/jill/stor")
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "application/x-json-stream; type=directory"
    finally:
        r.close()


@pytest.mark.parametrize(("algorithm", "status", "expected"), [
    ("rsa-sha384", 400, "InvalidHeader"),  # not in http-signature 1.3's hash list
    ("ed25519-sha512", 400, "InvalidHeader"),  # not a family the parser knows
    ("hmac-sha256", 401, "InvalidAlgorithm"),  # parses, not in muskie's allow-list
    ("dsa-sha512", 401, "InvalidAlgorithm"),
])
def test_refused_algorithms(raw: Raw, algorithm: str, status: int, expected: str) -> None:
    resp = raw.request("GET", "/jill/stor", auth=raw.auth_headers(algorithm=algorithm))
    assert (resp.status_code, code(resp)) == (status, expected)


def test_header_syntax(raw: Raw) -> None:
    date = raw.auth_headers()["Date"]
    sig = signature(raw.key["private"], "rsa-sha256", f"date: {date}".encode())
    base = f'keyId="{raw.key_id}",algorithm="rsa-sha256"'
    cases = {
        # spaces after commas are tolerated (§9)
        f'Signature {base}, headers="date", signature="{sig}"': (200, None),
        f'Signature {base},signature="{sig}"': (200, None),  # headers defaults to date
        f'Signature {base},headers="host",signature="{sig}"': (400, "InvalidHeader"),
        f'Signature keyId={raw.key_id},algorithm="rsa-sha256",signature="{sig}"':
            (400, "InvalidHeader"),
        f'Signature {base}': (400, "InvalidHeader"),
        "Signature": (400, "InvalidHeader"),
        f'Basic {base64.b64encode(b"jill:pw").decode()}': (403, "AuthorizationSchemeNotAllowed"),
    }
    for header, (status, expected) in cases.items():
        resp = raw.request("GET", "/jill/stor", auth={"Date": date, "Authorization": header})
        assert resp.status_code == status, (header, resp.text)
        if expected:
            assert code(resp) == expected, header


def test_key_lookup_failures(manta_server: MantaServer) -> None:
    md5 = manta_server.keys["rsa"]["md5"]
    cases = {
        f"/jill/{md5}": ("InvalidKeyId", None),
        f"/jill/a/b/keys/{md5}": ("InvalidKeyId", None),
        f"/nobody/keys/{md5}": ("AccountDoesNotExist", None),
        f"/jill/carol/keys/{md5}": ("UserDoesNotExist", None),
        f"/jill/keys/{manta_server.keys['stranger']['md5']}":
            ("KeyDoesNotExist", f"/jill/keys/{manta_server.keys['stranger']['md5']} does not"),
    }
    # Manta looks keys up by MD5 only: a SHA256 fingerprint is an unknown key (or, when its
    # base64 holds a "/", a keyId of the wrong shape)
    sha = manta_server.keys["rsa"]["sha256"]
    cases[f"/jill/keys/{sha}"] = ("InvalidKeyId" if "/" in sha else "KeyDoesNotExist", None)
    for key_id, (expected, message) in cases.items():
        r = Raw(manta_server, key_id=key_id)
        try:
            resp = r.request("GET", "/jill/stor")
        finally:
            r.close()
        assert (resp.status_code, code(resp)) == (403, expected), key_id
        if message:
            assert message in resp.json()["message"]


def test_wrong_private_key_is_an_invalid_signature(manta_server: MantaServer) -> None:
    # the stranger's key signs, the registered rsa key's id is claimed
    r = Raw(manta_server, "stranger", key_id=f"/jill/keys/{manta_server.keys['rsa']['md5']}")
    try:
        resp = r.request("GET", "/jill/stor")
    finally:
        r.close()
    assert (resp.status_code, code(resp)) == (403, "InvalidSignature")


def test_date_checks(raw: Raw) -> None:
    old = raw.request("GET", "/jill/stor", auth=raw.auth_headers(when=time.time() - 400))
    assert (old.status_code, code(old)) == (400, "RequestExpired")
    future = raw.request("GET", "/jill/stor", auth=raw.auth_headers(when=time.time() + 400))
    assert (future.status_code, code(future)) == (400, "InvalidHeader")
    assert "clock skew of" in future.json()["message"]
    bad = raw.request("GET", "/jill/stor", auth=raw.auth_headers(date="yesterday-ish"))
    assert (bad.status_code, code(bad)) == (400, "InvalidHeader")
    # inside the window both ways
    for delta in (-200, 200):
        ok = raw.request("GET", "/jill/stor", auth=raw.auth_headers(when=time.time() + delta))
        assert ok.status_code == 200


def test_anonymous_access_is_public_reads_only(raw: Raw, manta_server: MantaServer) -> None:
    name = f"anon-{time.time_ns()}"
    raw.put(f"/jill/public/{name}", b"hello world")
    anon = Raw(manta_server)
    try:
        assert anon.request("GET", f"/jill/public/{name}", auth={}).content == b"hello world"
        assert anon.request("HEAD", f"/jill/public/{name}", auth={}).status_code == 200
        denied = anon.request("GET", "/jill/stor", auth={})
        assert (denied.status_code, code(denied)) == (403, "AuthorizationFailed")
        assert "anonymous is not allowed" in denied.json()["message"]
        write = anon.request("PUT", f"/jill/public/{name}", auth={}, content=b"x")
        assert (write.status_code, code(write)) == (403, "AuthorizationFailed")
    finally:
        anon.close()
    # objects under public get a default CORS origin
    assert raw.request("HEAD", f"/jill/public/{name}").headers[
        "access-control-allow-origin"] == "*"


def test_subuser_roles(manta_server: MantaServer, raw: Raw) -> None:
    d = f"/jill/stor/roles-{time.time_ns()}"
    raw.mkdir(d)

    def as_bob(role: str | None, method: str, path: str, **kw: object) -> tuple[int, str]:
        r = Raw(manta_server, "bob", user="bob", algorithm="ecdsa-sha512", role=role)
        try:
            resp = r.request(method, path, **kw)  # type: ignore[arg-type]
        finally:
            r.close()
        return resp.status_code, code(resp) if resp.status_code >= 400 else ""

    assert as_bob("writer", "PUT", f"{d}/a", content=b"1") == (204, "")
    assert as_bob("*", "PUT", f"{d}/b", content=b"2") == (204, "")
    assert as_bob("reader", "GET", f"{d}/a") == (200, "")
    assert as_bob("reader", "PUT", f"{d}/c", content=b"3") == (403, "AuthorizationFailed")
    # no Role header: bob's default roles, of which there are none
    assert as_bob(None, "GET", f"{d}/a") == (403, "AuthorizationFailed")
    assert as_bob("nope", "GET", f"{d}/a") == (409, "InvalidRole")
    # sub-users may not use multipart uploads
    status, err = as_bob("writer", "POST", "/jill/uploads",
                         json={"objectPath": f"{d}/big"})
    assert (status, err) == (403, "AuthorizationFailed")


def test_error_bodies(raw: Raw) -> None:
    resp = raw.request("GET", "/jill/stor/definitely/missing")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["content-md5"] == base64.b64encode(
        hashlib.md5(resp.content).digest()).decode()
    assert resp.json() == {"code": "ResourceNotFound",
                           "message": "/jill/stor/definitely/missing was not found"}
    head = raw.request("HEAD", "/jill/stor/definitely/missing")
    assert head.status_code == 404 and head.content == b""
    for header in ("x-request-id", "x-response-time", "x-server-name", "date"):
        assert header in resp.headers
    assert resp.headers["server"] == "Manta"
