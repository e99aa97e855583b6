"""Raw HTTP helpers for the test server's own tests (signatures made by hand)."""

from __future__ import annotations

import base64
import email.utils
import functools
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from tests.servers.fixture_manta import MantaServer

_HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha512": hashes.SHA512}


@functools.cache
def _load(key_file: str) -> Any:
    # loading checks the whole RSA key (tens of ms): once per file
    data = Path(key_file).read_bytes()
    if b"OPENSSH" in data:
        return serialization.load_ssh_private_key(data, None)
    return serialization.load_pem_private_key(data, None)


def signature(key_file: str, algorithm: str, data: bytes) -> str:
    """Base64 signature of ``data`` with the private key in ``key_file``."""
    key = _load(key_file)
    digest = _HASHES.get(algorithm.split("-")[1], hashes.SHA256)()
    if isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(data, padding.PKCS1v15(), digest)
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        raw = key.sign(data, ec.ECDSA(digest))
    return base64.b64encode(raw).decode()


class Raw:
    """Requests to the server signed exactly as told."""

    def __init__(self, server: MantaServer, key: str = "rsa", *, user: str | None = None,
                 algorithm: str = "rsa-sha256", role: str | None = None,
                 key_id: str | None = None) -> None:
        self.server = server
        self.key = server.keys[key]
        self.algorithm = algorithm
        prefix = f"/{server.login}/{user}" if user else f"/{server.login}"
        self.key_id = key_id or f"{prefix}/keys/{self.key['md5']}"
        self.role = role
        self.http = httpx.Client(base_url=server.url, timeout=30)

    def close(self) -> None:
        self.http.close()

    def auth_headers(self, *, when: float | None = None, date: str | None = None,
                     params: str | None = None, algorithm: str | None = None) -> dict[str, str]:
        date = date or email.utils.formatdate(time.time() if when is None else when,
                                              usegmt=True)
        alg = algorithm or self.algorithm
        sig = signature(self.key["private"], alg, f"date: {date}".encode())
        auth = params or (f'Signature keyId="{self.key_id}",algorithm="{alg}",'
                          f'headers="date",signature="{sig}"')
        out = {"Date": date, "Authorization": auth}
        if self.role:
            out["Role"] = self.role
        return out

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                auth: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        h = {**(self.auth_headers() if auth is None else auth), **(headers or {})}
        return self.http.request(method, path, headers=h, **kw)

    def mkdir(self, path: str) -> None:
        r = self.request("PUT", path, headers={"Content-Type": "application/json; type=directory"})
        assert r.status_code == 204, r.text

    def put(self, path: str, data: bytes = b"x", **headers: str) -> httpx.Response:
        r = self.request("PUT", path, content=data, headers=headers)
        assert r.status_code == 204, r.text
        return r


def code(resp: httpx.Response) -> str:
    """The error code of a JSON error reply."""
    assert resp.headers["content-type"] == "application/json", resp.headers
    value: str = resp.json()["code"]
    return value
