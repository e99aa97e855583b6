"""The servers a benchmark run needs, started the way the test suite starts them.

S3 (Swift's S3 layer), Swift and fake-gcs-server come from the launch functions of
``tests/servers`` (``launch_swift``, ``launch_moto``, ``launch_fake_gcs``), called without
pytest.  The Manta test server's fixture launcher is private to its pytest plugin, so
``launch_manta`` below starts ``python -m tests.servers.manta`` itself with one account
(``jill``) and one RSA key.  Every server is stopped by PID (its process group) when the
``Servers`` context ends, on errors and Ctrl-C too.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.servers._shared import kill_group, wait_until
from tests.servers._spawn import spawn

REPO = Path(__file__).resolve().parents[1]
MANTA_LOGIN = "jill"


def launch_manta(workdir: Path) -> dict[str, Any]:
    """Start the Manta test server (v1, plain HTTP) with account ``jill`` and an RSA key."""
    workdir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(65537, 2048)
    key_file = workdir / "id_rsa"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    accounts = workdir / "accounts.json"
    accounts.write_text(json.dumps({"accounts": {MANTA_LOGIN: {"keys": [public]}}}))
    port_file = workdir / "port"
    port_file.unlink(missing_ok=True)
    log = workdir / "server.log"
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    proc = spawn([sys.executable, "-m", "tests.servers.manta", "--port", "0",
                  "--port-file", str(port_file), "--root", str(workdir / "data"),
                  "--accounts", str(accounts)], log, {**os.environ, "PYTHONPATH": path})
    try:
        wait_until(port_file.exists, 30, "manta test server", proc, log)
        url = f"http://127.0.0.1:{int(port_file.read_text())}"
        wait_until(lambda: httpx.get(f"{url}/_admin/ping", timeout=2).status_code == 200,
                   30, "manta test server", proc, log)
    except BaseException:
        kill_group(proc.pid)
        raise
    return {"pid": proc.pid, "url": url, "login": MANTA_LOGIN, "key_file": str(key_file),
            "log": str(log)}


def _launch(name: str, workdir: Path) -> dict[str, Any]:
    if name == "swift":
        from tests.servers._swift import launch_swift

        return launch_swift(workdir)
    if name == "moto":
        from tests.servers.fixture_moto import launch_moto

        return launch_moto(workdir)
    if name == "gcs":
        from tests.servers.fixture_gcs import launch_fake_gcs

        # the data set and the written files (2-3x SIZE) live in the emulator's memory:
        # under the tests' 256 MiB limit its garbage collector never stops, and every
        # contestant would measure that
        return launch_fake_gcs(workdir, memory_limit="4GiB")
    if name == "manta":
        return launch_manta(workdir)
    raise ValueError(f"unknown server {name}")


class Servers:
    """Start servers on first use (``get``); stop them all by PID on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: dict[str, dict[str, Any]] = {}

    def get(self, name: str) -> dict[str, Any]:
        if name not in self.running:
            print(f"[bench] starting {name} server", file=sys.stderr, flush=True)
            workdir = self.workdir / f"server-{name}"
            workdir.mkdir(parents=True, exist_ok=True)
            self.running[name] = _launch(name, workdir)
        return self.running[name]

    def pids(self, name: str) -> list[int]:
        info = self.running.get(name)
        return [] if info is None else [info["pid"], *info.get("more_pids", [])]

    def stop(self, name: str) -> None:
        info = self.running.pop(name, None)
        if info is not None:
            for pid in [info["pid"], *info.get("more_pids", [])]:
                kill_group(pid)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()
