"""Session fixtures for read-only HTTP trees: ``nginx_server`` and ``pyhttp_server``.

Both serve one directory, the *www root*, that the tests fill: each test makes its own
subdirectory (``HttpServers.fresh``) and mounts or lists it through any of the servers.

``nginx_server``: Debian's nginx (installed by ``scripts/install-test-servers.sh``), one
master process started in the foreground (``daemon off``) so that its PID is the one the
session stops.  Three listeners on free loopback ports:

- ``https``: TLS with a self-signed certificate made with openssl at start (CN and SAN
  127.0.0.1 and localhost; ``ca`` is the PEM file to trust), JSON autoindex;
- ``http``: the same server in plain HTTP;
- ``html``: plain HTTP with nginx's default HTML autoindex (the listing fallback).

Every file is served with Range, ETag and Last-Modified, and these places of the root behave
otherwise: ``_auth/`` wants HTTP basic credentials (``user``/``password``), ``_forbidden/``
answers 403, ``_norange/`` ignores Range (``max_ranges 0``: a 200 with the whole file).

``pyhttp_server``: Python's ``http.server`` on the same root: an HTML index, no ETags,
Range ignored, HTTP/1.0 (a connection per request).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import ssl
import subprocess
import sys
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers._shared import free_port, port_open, shared_root, shared_server, wait_until
from tests.servers._spawn import spawn

USER = "jill"
#: places of the www root with their own rules (see the module docstring)
SPECIAL = ("_auth", "_forbidden", "_norange")


def www_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory every HTTP test server serves (common to all xdist workers)."""
    root = shared_root(tmp_path_factory) / "http-www"
    root.mkdir(exist_ok=True)
    for d in SPECIAL:
        (root / d).mkdir(exist_ok=True)
    return root


def _self_signed(workdir: Path) -> tuple[Path, Path]:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, stdin=subprocess.DEVNULL)
    key.chmod(0o600)
    return cert, key


def _config(workdir: Path, www: Path, ports: dict[str, int], cert: Path, key: Path,
            htpasswd: Path) -> str:
    # as root, nginx's workers would run as nobody, who cannot enter pytest's 0700
    # directories: keep them as the user running the tests
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    tmp = workdir / "tmp"
    return f"""
{user}
daemon off;
worker_processes 2;
pid {workdir}/nginx.pid;
error_log {workdir}/log/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {workdir}/log/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ text/html html; text/plain txt; application/json json; }}
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{ports["https"]} ssl;
        listen 127.0.0.1:{ports["http"]};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {www};
        autoindex on;
        autoindex_format json;
        location / {{ limit_except GET {{ deny all; }} }}
        location /_auth/ {{
            auth_basic "storefs tests";
            auth_basic_user_file {htpasswd};
        }}
        location /_forbidden/ {{ deny all; }}
        location /_norange/ {{ max_ranges 0; }}
    }}
    server {{
        listen 127.0.0.1:{ports["html"]};
        root {www};
        autoindex on;
        location / {{ limit_except GET {{ deny all; }} }}
    }}
}}
"""


def _answers(url: str, cafile: Path | None = None) -> bool:
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    with urllib.request.urlopen(url, timeout=2, context=context) as r:
        return bool(r.status == 200)


def launch_nginx(workdir: Path, www: Path) -> dict[str, Any]:
    """Start nginx on three free loopback ports and wait until each answers."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise RuntimeError("nginx is not installed: run scripts/install-test-servers.sh")
    for d in ("log", "tmp"):
        (workdir / d).mkdir(exist_ok=True)
    cert, key = _self_signed(workdir)
    password = secrets.token_urlsafe(12)
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(f"{USER}:{{PLAIN}}{password}\n")
    ports = {name: free_port() for name in ("https", "http", "html")}
    conf = workdir / "nginx.conf"
    conf.write_text(_config(workdir, www, ports, cert, key, htpasswd))
    log = workdir / "log" / "error.log"
    proc = spawn([nginx, "-p", str(workdir), "-c", str(conf), "-e", str(log)],
                 workdir / "nginx.out")
    info = {
        "pid": proc.pid, "root": str(www), "ca": str(cert), "user": USER,
        "password": password,
        "https": f"https://127.0.0.1:{ports['https']}",
        "http": f"http://127.0.0.1:{ports['http']}",
        "html": f"http://127.0.0.1:{ports['html']}",
        "log": str(workdir / "log" / "access.log"),
    }
    wait_until(lambda: all(port_open(p) for p in ports.values()), 30, "nginx", proc, log)
    wait_until(lambda: _answers(info["https"] + "/", cert) and _answers(info["html"] + "/"),
               10, "nginx", proc, log)
    return info


def launch_pyhttp(workdir: Path, www: Path) -> dict[str, Any]:
    """Python's http.server on a free loopback port, serving ``www``."""
    port = free_port()
    log = workdir / "http-server.log"
    proc = spawn([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                  "--directory", str(www), str(port)], log)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: port_open(port) and _answers(url + "/"), 30, "http.server", proc, log)
    return {"pid": proc.pid, "root": str(www), "url": url}


@dataclass(frozen=True)
class HttpServers:
    """The www root and the base URLs that serve it."""

    root: Path
    #: base URLs without a trailing slash, by name: https, http, html (nginx), py
    urls: dict[str, str]
    ca: Path
    user: str
    password: str

    def fresh(self, under: str = "") -> tuple[Path, str]:
        """A new empty directory of the root (below ``under``, one of ``SPECIAL``) and its
        URL path (``/NAME/`` or ``/_auth/NAME/``)."""
        name = f"t{uuid.uuid4().hex[:10]}"
        rel = f"{under}/{name}" if under else name
        d = self.root / rel
        d.mkdir(parents=True)
        return d, f"/{rel}/"


@pytest.fixture(scope="session")
def nginx_server(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """nginx for the whole session (shared by the xdist workers)."""
    www = www_root(tmp_path_factory)
    return shared_server(tmp_path_factory, "nginx", lambda w: launch_nginx(w, www))


@pytest.fixture(scope="session")
def pyhttp_server(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Python's http.server for the whole session, on the same root as nginx."""
    www = www_root(tmp_path_factory)
    return shared_server(tmp_path_factory, "pyhttp", lambda w: launch_pyhttp(w, www))


@pytest.fixture(scope="session")
def http_servers(nginx_server: dict[str, Any],
                 pyhttp_server: dict[str, Any]) -> HttpServers:
    """Both servers, as one ``HttpServers``."""
    urls = {k: nginx_server[k] for k in ("https", "http", "html")}
    urls["py"] = pyhttp_server["url"]
    return HttpServers(Path(nginx_server["root"]), urls, Path(nginx_server["ca"]),
                       nginx_server["user"], nginx_server["password"])
