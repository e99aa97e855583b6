"""``moto_server``: moto's S3 server (pip ``moto[server]``, from the venv), shared by the session.

moto implements the S3 REST API in Python; it accepts any credentials (no signature check)
and keeps objects in spooled temporary files (RAM, then disk under the server's own TMPDIR
in the session directory).  Every ranged GET reads the whole object, so use it for
correctness, and Swift's S3 layer (``swift_server``) for read throughput.

The fixture returns a dict (the same in every xdist worker)::

    endpoint     http://127.0.0.1:PORT (path-style and virtual-host both work)
    access_key   "test"        secret_key  "test"        region  "us-east-1"
    pid          the server (stopped by PID at the end of the session)

Each test should use its own bucket.  ``launch_moto(workdir, cert=..., key=...)`` starts a
private instance serving HTTPS with the given PEM certificate and key (tests of certificate
checking); stop it with ``tests.servers._shared.kill_group(info["pid"])``.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.servers._shared import free_port, kill_group, port_open, shared_server, wait_until
from tests.servers._spawn import spawn

ACCESS_KEY = SECRET_KEY = "test"
REGION = "us-east-1"

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(endpoint: str) -> bool:
    try:
        with _opener.open(f"{endpoint}/moto-api/data.json", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def launch_moto(workdir: Path, cert: Path | None = None, key: Path | None = None) -> dict[str, Any]:
    """Start moto on a free loopback port and wait until it answers (HTTPS when ``cert`` and
    ``key`` are given: readiness is then the open port, since the certificate need not be
    trusted).  Returns the dict described in the module docstring."""
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    last: RuntimeError | None = None
    for _ in range(3):  # a port found free may be taken before moto binds it
        port = free_port()
        args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        if cert is not None and key is not None:
            args += ["-c", str(cert), "-k", str(key)]
        log = workdir / "moto.log"
        proc = spawn(args, log, {**os.environ, "TMPDIR": str(tmp)})
        scheme = "https" if cert is not None else "http"
        endpoint = f"{scheme}://127.0.0.1:{port}"
        check = partial(port_open, port) if cert is not None else partial(_answers, endpoint)
        try:
            wait_until(check, 30, "moto server", proc, log)
        except RuntimeError as exc:
            kill_group(proc.pid)
            last = exc
            continue
        return {
            "pid": proc.pid,
            "endpoint": endpoint,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "region": REGION,
            "workdir": str(workdir),
            "startup_seconds": round(time.monotonic() - t0, 2),
        }
    assert last is not None
    raise last


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A running moto S3 server; see the module docstring."""
    return shared_server(tmp_path_factory, "moto", launch_moto)
