"""``keystone_swift``: a real Keystone v3 (Debian's python3-keystone) in front of a Swift AIO.

Only the tests marked ``@pytest.mark.keystone`` use it (``scripts/install-test-servers.sh
--keystone`` installs the package).  Start-up, on a 2-core machine: Keystone's database
and keys are made in one ``/usr/bin/python3`` process (``keystone-manage`` would start four
interpreters), then ``keystone-wsgi-public`` serves on a free loopback port with sqlite and
fernet tokens; the project ``storefs``, user ``storefs``/``storefs`` (role ``member``) and the
``object-store`` endpoint ``http://127.0.0.1:P/v1/KEY_$(project_id)s`` are registered
through the REST API; then the Swift AIO of ``_swift_aio.py`` starts with ``authtoken
keystoneauth`` added to its proxy (``_swift_keystone_aio.py``).

Returns ``{"auth_url": ".../v3", "username", "password", "project_name", "user_domain_name",
"project_domain_name", "region", "project_id", "user_id", "storage_url", "proxy_url",
"startup_seconds", "pid", "more_pids"}``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.servers._shared import free_port, kill_group, shared_server, wait_until
from tests.servers._spawn import spawn
from tests.servers._swift import SWIFT_PYTHON, ready

LAUNCHER = Path(__file__).with_name("_swift_keystone_aio.py")
REGION = "RegionOne"

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# db_sync, fernet_setup, credential_setup and bootstrap in one interpreter
_BOOTSTRAP = r"""
import sys
import keystone.conf
from keystone.cmd import cli
conf, user, group, url, region = sys.argv[1:]
base = ["keystone-manage", "--config-file", conf]
for args in (["db_sync"],
             ["fernet_setup", "--keystone-user", user, "--keystone-group", group],
             ["credential_setup", "--keystone-user", user, "--keystone-group", group],
             ["bootstrap", "--bootstrap-password", "admin", "--bootstrap-region-id", region,
              "--bootstrap-admin-url", url + "/v3", "--bootstrap-public-url", url + "/v3",
              "--bootstrap-internal-url", url + "/v3"]):
    keystone.conf.CONF.clear()
    cli.main(argv=base + args)
import sqlite3
# WAL: a lingering read transaction would otherwise make the next write "database is locked"
sqlite3.connect(conf.replace("keystone.conf", "keystone.db")).execute("PRAGMA journal_mode=WAL")
"""


def _call(url: str, method: str, path: str, body: Any = None,
          token: str | None = None) -> tuple[Any, Any]:
    req = urllib.request.Request(
        url + path, method=method, data=json.dumps(body).encode() if body else None,
        headers={"Content-Type": "application/json", **({"X-Auth-Token": token} if token else {})})
    with _opener.open(req, timeout=30) as r:
        raw = r.read()
        return r.headers, json.loads(raw) if raw else None


def admin_token(url: str) -> str:
    headers, _ = _call(url, "POST", "/v3/auth/tokens", {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": "admin"}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    return str(headers["X-Subject-Token"])


def _register(url: str, swift_port: int) -> dict[str, str]:
    tok = admin_token(url)
    svc = _call(url, "POST", "/v3/services",
                {"service": {"type": "object-store", "name": "swift"}}, tok)[1]["service"]
    for iface in ("public", "internal", "admin"):
        _call(url, "POST", "/v3/endpoints", {"endpoint": {
            "service_id": svc["id"], "interface": iface, "region_id": REGION,
            "url": f"http://127.0.0.1:{swift_port}/v1/KEY_$(project_id)s"}}, tok)
    prj = _call(url, "POST", "/v3/projects",
                {"project": {"name": "storefs", "domain_id": "default"}}, tok)[1]["project"]
    usr = _call(url, "POST", "/v3/users", {"user": {
        "name": "storefs", "password": "storefs", "domain_id": "default",
        "default_project_id": prj["id"]}}, tok)[1]["user"]
    role = _call(url, "GET", "/v3/roles?name=member", None, tok)[1]["roles"][0]
    _call(url, "PUT", f"/v3/projects/{prj['id']}/users/{usr['id']}/roles/{role['id']}",
          None, tok)
    return {"project_id": prj["id"], "user_id": usr["id"]}


def launch_keystone_swift(workdir: Path) -> dict[str, Any]:
    """Start Keystone and a Keystone-fronted Swift AIO in ``workdir``; see the docstring."""
    if shutil.which("keystone-wsgi-public") is None:
        raise RuntimeError("keystone is not installed; run: "
                           "bash scripts/install-test-servers.sh --keystone")
    t0 = time.monotonic()
    kport = free_port()
    ports = {n: free_port() for n in ("proxy", "account", "container", "object", "memcached")}
    url = f"http://127.0.0.1:{kport}"
    kdir = workdir / "keystone"
    kdir.mkdir(parents=True, exist_ok=True)
    conf = kdir / "keystone.conf"
    conf.write_text(f"""[DEFAULT]
log_file = {kdir}/keystone.log
[database]
connection = sqlite:///{kdir}/keystone.db
[token]
provider = fernet
expiration = 86400
[fernet_tokens]
key_repository = {kdir}/fernet-keys
[fernet_receipts]
key_repository = {kdir}/fernet-keys
[credential]
key_repository = {kdir}/credential-keys
""")
    for d in ("fernet-keys", "credential-keys"):
        (kdir / d).mkdir(exist_ok=True)
    user, group = subprocess.check_output(["id", "-un"], text=True).strip(), \
        subprocess.check_output(["id", "-gn"], text=True).strip()
    env = {**os.environ, "OS_KEYSTONE_CONFIG_DIR": str(kdir),
           "OS_KEYSTONE_CONFIG_FILES": str(conf), "EVENTLET_NO_GREENDNS": "yes"}
    with open(kdir / "bootstrap.log", "wb") as out:
        done = subprocess.run([SWIFT_PYTHON, "-c", _BOOTSTRAP, str(conf), user, group, url,
                               REGION], stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, env=env, timeout=300)
    if done.returncode:
        tail = (kdir / "bootstrap.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"keystone bootstrap failed:\n{tail}")
    log = kdir / "wsgi.log"
    keystone = spawn(["keystone-wsgi-public", "--host", "127.0.0.1", "--port", str(kport)],
                     log, env)
    try:
        wait_until(lambda: _opener.open(f"{url}/v3", timeout=2).status == 200, 120,
                   "keystone", keystone, log)
        ids = _register(url, ports["proxy"])
        spec = {"workdir": str(workdir / "swift"), "max_file_size": 5 * 1024**3 + 2,
                "keystone_url": url, **ports}
        (workdir / "swift").mkdir(exist_ok=True)
        slog = workdir / "swift-launcher.log"
        swift = spawn([SWIFT_PYTHON, str(LAUNCHER), json.dumps(spec)], slog,
                      {**os.environ, "EVENTLET_NO_GREENDNS": "yes"})
    except BaseException:
        kill_group(keystone.pid)
        raise
    proxy = f"http://127.0.0.1:{ports['proxy']}"
    try:
        wait_until(lambda: ready(proxy, ports), 90, "keystone swift", swift, slog)
    except BaseException:
        kill_group(swift.pid)
        kill_group(keystone.pid)
        raise
    return {
        "pid": keystone.pid,
        "more_pids": [swift.pid],
        "auth_url": f"{url}/v3",
        "keystone_url": url,
        "username": "storefs",
        "password": "storefs",
        "project_name": "storefs",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
        "region": REGION,
        **ids,
        "proxy_url": proxy,
        "storage_url": f"{proxy}/v1/KEY_{ids['project_id']}",
        "startup_seconds": round(time.monotonic() - t0, 2),
    }


@pytest.fixture(scope="session")
def keystone_swift(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Keystone v3 + a Swift that trusts it, for the whole session; see the docstring.

    Without python3-keystone the tests that need it are skipped on a developer's machine,
    but fail under CI (``CI`` set), where a missing install step must not pass unseen."""
    if shutil.which("keystone-wsgi-public") is None and not os.environ.get("CI"):
        pytest.skip("Keystone not installed: bash scripts/install-test-servers.sh --keystone")
    return shared_server(tmp_path_factory, "keystone-swift", launch_keystone_swift)
