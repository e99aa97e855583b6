"""Session fixtures for Manta: keys, an ssh-agent, and the test server (v1, v2, TLS).

``manta_keys`` generates, once per session, the keys of account ``jill``:

- ``rsa``: RSA 2048, PEM (PKCS#1), no passphrase;
- ``ecdsa``: ECDSA P-256, OpenSSH format, no passphrase;
- ``agent``: RSA 2048, OpenSSH format **with a passphrase**, loaded into a private
  ssh-agent (so it works only through the agent);
- ``bob``: ECDSA P-521, PKCS#8 PEM, the key of sub-user ``jill/bob``, who has the roles
  ``writer`` (every action) and ``reader`` (reads only) and no default role;
- ``stranger``: RSA, registered nowhere;

and starts ``ssh-agent`` on a private socket.  ``manta_server`` (v1), ``manta_v2_server``
and ``manta_tls_server`` (v1 over HTTPS with a self-signed certificate) run
``python -m tests.servers.manta`` on free loopback ports.  Each is a ``MantaServer``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.servers._shared import shared_server, wait_until
from tests.servers._spawn import spawn

REPO = Path(__file__).resolve().parents[2]
LOGIN = "jill"
SUBUSER = "bob"
PASSPHRASE = b"correct horse battery staple"

_PRIVATE_FORMATS = {
    "pem": serialization.PrivateFormat.TraditionalOpenSSL,
    "openssh": serialization.PrivateFormat.OpenSSH,
    "pkcs8": serialization.PrivateFormat.PKCS8,
}


def _write_key(d: Path, name: str, key: Any, fmt: str, passphrase: bytes | None = None,
               ) -> dict[str, str]:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase
        else serialization.NoEncryption())
    private = d / name
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          _PRIVATE_FORMATS[fmt], enc))
    private.chmod(0o600)
    public_line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    public = d / f"{name}.pub"
    public.write_text(f"{public_line} {name}@storefs-tests\n")
    fps = {}
    for algo in ("md5", "sha256"):
        out = subprocess.run(["ssh-keygen", "-l", "-E", algo, "-f", str(public)],
                             check=True, capture_output=True, text=True).stdout
        fps[algo] = out.split()[1]
    return {"private": str(private), "public": str(public), "line": public_line,
            # as ssh-keygen -l prints them: "MD5:aa:bb:..." and "SHA256:..."
            "md5": fps["md5"].removeprefix("MD5:"), "md5_printed": fps["md5"],
            "sha256": fps["sha256"]}


def _launch_keys(workdir: Path) -> dict[str, Any]:
    keys_dir = workdir / "keys"
    keys_dir.mkdir(exist_ok=True)
    keys = {
        "rsa": _write_key(keys_dir, "id_rsa", rsa.generate_private_key(65537, 2048), "pem"),
        "ecdsa": _write_key(keys_dir, "id_ecdsa", ec.generate_private_key(ec.SECP256R1()),
                            "openssh"),
        "bob": _write_key(keys_dir, "bob_ecdsa", ec.generate_private_key(ec.SECP521R1()),
                          "pkcs8"),
        "stranger": _write_key(keys_dir, "stranger_rsa",
                               rsa.generate_private_key(65537, 2048), "pem"),
    }
    agent_key = rsa.generate_private_key(65537, 2048)
    # the agent gets the clear key; the file on disk is the passphrase-protected one
    plain = _write_key(keys_dir, "agent_plain", agent_key, "openssh")
    keys["agent"] = _write_key(keys_dir, "id_agent", agent_key, "openssh", PASSPHRASE)
    sock = workdir / "agent.sock"
    sock.unlink(missing_ok=True)
    log = workdir / "agent.log"
    proc = spawn(["ssh-agent", "-D", "-a", str(sock)], log)
    wait_until(sock.exists, 10, "ssh-agent", proc, log)
    env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
    subprocess.run(["ssh-add", plain["private"]], env=env, check=True, capture_output=True,
                   stdin=subprocess.DEVNULL)
    Path(plain["private"]).unlink()
    Path(plain["public"]).unlink()
    accounts = {"accounts": {
        LOGIN: {
            "keys": [keys[k]["line"] for k in ("rsa", "ecdsa", "agent")],
            "users": {SUBUSER: {"keys": [keys["bob"]["line"]],
                                "roles": ["writer", "reader"], "default_roles": []}},
            "roles": {"writer": ["*"], "reader": ["getobject", "getdirectory"]},
        },
    }}
    accounts_file = workdir / "accounts.json"
    accounts_file.write_text(json.dumps(accounts, indent=2))
    return {"pid": proc.pid, "keys": keys, "agent_sock": str(sock),
            "accounts": str(accounts_file), "login": LOGIN, "subuser": SUBUSER}


def _self_signed(workdir: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = workdir / "cert.pem", workdir / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _launcher(keys: dict[str, Any], *extra: str, tls: bool = False) -> Any:
    def launch(workdir: Path) -> dict[str, Any]:
        data = workdir / "data"
        shutil.rmtree(data, ignore_errors=True)
        port_file = workdir / "port"
        port_file.unlink(missing_ok=True)
        args = [sys.executable, "-m", "tests.servers.manta", "--port", "0",
                "--port-file", str(port_file), "--root", str(data),
                "--accounts", keys["accounts"], *extra]
        if tls:
            cert, key = _self_signed(workdir)
            args += ["--tls-cert", str(cert), "--tls-key", str(key)]
        log = workdir / "server.log"
        # the server is the package tests.servers.manta of this checkout
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        proc = spawn(args, log, env={**os.environ, "PYTHONPATH": path})
        wait_until(port_file.exists, 30, "manta test server", proc, log)
        port = int(port_file.read_text())
        scheme = "https" if tls else "http"
        url = f"{scheme}://127.0.0.1:{port}"

        def ready() -> bool:
            return httpx.get(f"{url}/_admin/ping", verify=False, timeout=2).status_code == 200

        wait_until(ready, 30, "manta test server", proc, log)
        return {"pid": proc.pid, "url": url, "port": port, "log": str(log), "root": str(data),
                "version": 2 if "--v2" in extra else 1}

    return launch


@dataclass
class MantaServer:
    """A running test server and the credentials it knows."""

    url: str
    version: int
    keys: dict[str, dict[str, str]]
    agent_sock: str
    #: where the server keeps its namespace and bytes
    root: str
    #: the server's process (to watch its memory)
    pid: int = 0
    login: str = LOGIN
    subuser: str = SUBUSER

    def options(self, key: str = "rsa", **extra: str) -> dict[str, str]:
        """``-o`` options for a key file login (the agent is not involved)."""
        return {"url": self.url, "user": self.login, "key_file": self.keys[key]["private"],
                **extra}

    def blob_file(self, path: str) -> Path:
        """The file holding the bytes of the object at Manta ``path`` (to damage them)."""
        import sqlite3

        with contextlib.closing(sqlite3.connect(Path(self.root) / "namespace.sqlite")) as db:
            row = db.execute("SELECT blob FROM entries WHERE path = ?", (path,)).fetchone()
        assert row is not None, path
        return Path(self.root) / "blobs" / row[0]

    def ops(self, prefix: str) -> dict[str, int]:
        """Operation counts (PutObject, HeadObject...) of every request under ``prefix``."""
        out: dict[str, int] = self.stats(prefix)["ops"]
        return out

    def stats(self, prefix: str) -> dict[str, Any]:
        """Request counts of every request under the Manta path ``prefix``."""
        resp = httpx.get(f"{self.url}/_admin/stats", params={"prefix": prefix}, verify=False)
        resp.raise_for_status()
        out: dict[str, Any] = resp.json()
        return out

    @functools.cached_property
    def auth(self) -> httpx.Auth:
        """The account's signer (rsa key), for direct requests from tests."""
        from storefs.backends.manta_auth import MantaAuth, Principal, load_key_file

        return MantaAuth(load_key_file(Path(self.keys["rsa"]["private"])), Principal(self.login))

    def fresh_dir(self, tag: str = "t") -> str:
        """Create ``/jill/stor/<tag>-<uuid>`` and return its Manta path."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", tag)[:40]
        path = f"/{self.login}/stor/{safe}-{uuid.uuid4().hex[:12]}"
        resp = httpx.put(self.url + path, auth=self.auth, verify=False,
                         headers={"Content-Type": "application/json; type=directory"})
        assert resp.status_code == 204, resp.text
        return path


@pytest.fixture(scope="session")
def manta_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return shared_server(tmp_path_factory, "manta-keys", _launch_keys)


def _server(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Any], name: str,
            *extra: str, tls: bool = False) -> MantaServer:
    info = shared_server(tmp_path_factory, name, _launcher(keys, *extra, tls=tls))
    return MantaServer(info["url"], info["version"], keys["keys"], keys["agent_sock"],
                       info["root"], info["pid"])


@pytest.fixture(scope="session")
def manta_server(tmp_path_factory: pytest.TempPathFactory,
                 manta_keys: dict[str, Any]) -> MantaServer:
    """Manta v1 (SnapLinks) over plain HTTP."""
    return _server(tmp_path_factory, manta_keys, "manta-v1")


@pytest.fixture(scope="session")
def manta_v2_server(tmp_path_factory: pytest.TempPathFactory,
                    manta_keys: dict[str, Any]) -> MantaServer:
    """Manta v2 (SnaplinksDisabledError) over plain HTTP."""
    return _server(tmp_path_factory, manta_keys, "manta-v2", "--v2")


@pytest.fixture(scope="session")
def manta_tls_server(tmp_path_factory: pytest.TempPathFactory,
                     manta_keys: dict[str, Any]) -> MantaServer:
    """Manta v1 over HTTPS with a self-signed certificate (not trusted by default)."""
    return _server(tmp_path_factory, manta_keys, "manta-tls", tls=True)


@pytest.fixture
def agent_env(manta_server: MantaServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``SSH_AUTH_SOCK`` pointing at the session's agent (which holds the ``agent`` key)."""
    monkeypatch.setenv("SSH_AUTH_SOCK", manta_server.agent_sock)
    yield manta_server.agent_sock


@pytest.fixture
def no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ssh-agent and an empty ~/.ssh, so only what a test names is found."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
