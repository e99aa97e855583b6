"""Starting and checking a Swift all-in-one (see ``fixture_swift`` for what it is).

Kept apart from the ``fixture_swift`` plugin so that other fixture modules can import these
helpers (``launch_swift``, ``ready``, ``SWIFT_PYTHON``) without importing a pytest plugin
before pytest registers it (which pytest reports as PytestAssertRewriteWarning, an error
here)."""


from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers._shared import free_port, kill_group, wait_until
from tests.servers._spawn import spawn

SWIFT_PYTHON = "/usr/bin/python3"
LAUNCHER = Path(__file__).with_name("_swift_aio.py")
USER, KEY = "test:tester", "testing"
USERS = {"test:tester": "testing", "test2:tester2": "testing2"}
REAL_MAX_FILE_SIZE = 5 * 1024**3 + 2

# urllib without the machine's proxy settings: the server is on loopback
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _swift_missing() -> str | None:
    if shutil.which("memcached") is None or not os.path.exists(SWIFT_PYTHON):
        return "memcached or /usr/bin/python3 missing"
    probe = subprocess.run([SWIFT_PYTHON, "-c", "import swift.common.wsgi"],
                           capture_output=True, env={**os.environ, "EVENTLET_NO_GREENDNS": "yes"})
    if probe.returncode:
        return "Debian's swift is not installed"
    return None


def ready(proxy: str, ports: dict[str, int]) -> bool:
    """True once tempauth hands out a token and the account, container and object servers
    answer: then every request a test makes can succeed."""
    req = urllib.request.Request(f"{proxy}/auth/v1.0",
                                 headers={"X-Auth-User": USER, "X-Auth-Key": KEY})
    try:
        with _opener.open(req, timeout=2) as r:
            token, storage = r.headers["X-Auth-Token"], r.headers["X-Storage-Url"]
        head = urllib.request.Request(storage, method="HEAD", headers={"X-Auth-Token": token})
        with _opener.open(head, timeout=2):
            pass
        for name in ("container", "object"):
            with _opener.open(f"http://127.0.0.1:{ports[name]}/healthcheck", timeout=2):
                pass
    except (urllib.error.URLError, OSError, KeyError):
        return False
    return True


def _start_once(workdir: Path, max_file_size: int) -> dict[str, Any]:
    ports = {n: free_port() for n in ("proxy", "account", "container", "object", "memcached")}
    spec = {"workdir": str(workdir), "max_file_size": max_file_size, **ports}
    pids_file = workdir / "run" / "pids.json"
    pids_file.unlink(missing_ok=True)
    log = workdir / "launcher.log"
    # the launcher leads its own process group: killing it takes every server; no dnspython
    # import (EVENTLET_NO_GREENDNS) halves each server's start-up time
    proc = spawn([SWIFT_PYTHON, str(LAUNCHER), json.dumps(spec)], log,
                 {**os.environ, "EVENTLET_NO_GREENDNS": "yes"})
    proxy = f"http://127.0.0.1:{ports['proxy']}"
    try:
        wait_until(lambda: ready(proxy, ports), 60, "swift all-in-one", proc, log)
        wait_until(pids_file.exists, 10, "swift launcher pids", proc, log)
    except BaseException:
        kill_group(proc.pid)
        raise
    children: dict[str, int] = json.loads(pids_file.read_text())["children"]
    storage = {u: f"{proxy}/v1/AUTH_{u.split(':')[0]}" for u in USERS}
    return {
        "pid": proc.pid,
        "more_pids": sorted(children.values()),
        "auth_url": f"{proxy}/auth/v1.0",
        "user": USER,
        "key": KEY,
        "storage_url": storage[USER],
        "users": {u: {"key": k, "storage_url": storage[u]} for u, k in USERS.items()},
        "proxy_url": proxy,
        "s3_endpoint": proxy,
        "s3_access_key": USER,
        "s3_secret_key": KEY,
        "s3_region": "us-east-1",
        "max_file_size": max_file_size,
        "ports": ports,
        "workdir": str(workdir),
        "log_dir": str(workdir / "log"),
    }


def launch_swift(workdir: Path, max_file_size: int = REAL_MAX_FILE_SIZE) -> dict[str, Any]:
    """Start a Swift all-in-one in ``workdir`` and wait until it serves; see the module
    docstring for the returned dict.  Raises ``RuntimeError`` with the log tail on failure."""
    missing = _swift_missing()
    if missing:
        raise RuntimeError(f"{missing}; run: bash scripts/install-test-servers.sh")
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    last: RuntimeError | None = None
    # a port found free may be taken by another process before Swift binds it: try anew
    for _ in range(3):
        try:
            info = _start_once(workdir, max_file_size)
        except RuntimeError as exc:
            last = exc
            continue
        info["startup_seconds"] = round(time.monotonic() - t0, 2)
        return info
    assert last is not None
    raise last


# older name
_ready = ready
