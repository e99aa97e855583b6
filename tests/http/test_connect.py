"""``connect`` and the settings: every way a mount of an HTTP tree can be wrong before it goes
live gives one line naming the cause, never a secret."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storefs.backends.http import settings_from
from storefs.errors import AuthError, ConfigError, ConnectError, NotFound, StorefsError
from storefs.source import parse_source
from tests.http.conftest import open_http, write_tree
from tests.servers._shared import free_port
from tests.servers.fixture_nginx import HttpServers

SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel does) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


Case = Callable[[HttpServers, str], tuple[str, dict[str, str]]]

CASES: dict[str, tuple[Case, type[StorefsError], str]] = {
    "connection refused": (
        lambda s, p: (f"http://127.0.0.1:{free_port()}/x/", {}),
        ConnectError, "cannot reach http://127.0.0.1:{port}: connection refused"),
    "unknown host": (
        lambda s, p: ("https://no-such-host.invalid/x/", {}),
        ConnectError, "cannot reach https://no-such-host.invalid: host name not found"),
    "self-signed certificate": (
        lambda s, p: (s.urls["https"] + p, {}),
        ConnectError, "the TLS certificate of https://127.0.0.1:{port} is refused "
                      "(self-signed certificate); pass -o ca_bundle=FILE"),
    "certificate of another CA": (
        lambda s, p: (s.urls["https"] + p, {"ca_bundle": SYSTEM_CA}),
        ConnectError, "is refused (self-signed certificate); is it the CA that signed"),
    "https to a plain port": (
        lambda s, p: (s.urls["http"].replace("http:", "https:") + p, {}),
        ConnectError, "TLS handshake with https://127.0.0.1:{port} failed: "
                      "WRONG_VERSION_NUMBER (is it a plain http:// server?)"),
    "no such directory": (
        lambda s, p: (s.urls["http"] + p + "missing/", {}),
        NotFound, "http://127.0.0.1:{port}{path}missing/ does not exist (404 Not Found)"),
    "a file, not a directory": (
        lambda s, p: (s.urls["https"] + p + "file.txt", {"ca_bundle": str(s.ca)}),
        ConfigError, "{path}file.txt is a file, not a directory"),
    "no credentials": (
        lambda s, p: (s.urls["http"] + "/_auth" + p, {}),
        AuthError, "wants credentials (401); pass -o username=,password="),
    "wrong password": (
        lambda s, p: (s.urls["http"] + "/_auth" + p,
                      {"username": s.user, "password": "not-" + s.password}),
        AuthError, "refused the credentials of jill (401)"),
    "forbidden": (
        lambda s, p: (s.urls["http"] + "/_forbidden" + p, {}),
        AuthError, "access denied (403 Forbidden)"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_connect_errors_name_their_cause_in_one_line(
        servers: HttpServers, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the machine's trust settings point at the system store, as on the real machine
    monkeypatch.setenv("SSL_CERT_FILE", SYSTEM_CA)
    d, path = servers.fresh()
    write_tree(d, {"file.txt": b"x"})
    for under in ("_auth", "_forbidden"):
        (servers.root / under / path.strip("/")).mkdir()
    build, cls, expected = CASES[case]
    url, options = build(servers, path)
    if case == "connection refused":
        expected = expected.format(port=url.split(":")[2].split("/")[0])
    port = url.split("/")[2].rpartition(":")[2]
    with pytest.raises(cls) as exc:
        async with open_http(url, options):
            pass
    message = str(exc.value)
    assert expected.format(port=port, path=path) in message
    assert message.startswith("http: ") and "\n" not in message and len(message) < 300
    assert servers.password not in message


async def test_a_server_that_never_answers(silent_port: int) -> None:
    with pytest.raises(ConnectError) as exc:
        async with open_http(f"http://127.0.0.1:{silent_port}/", {"timeout": "0.3"}):
            pass
    assert str(exc.value) == f"http: http://127.0.0.1:{silent_port} did not answer within 0.3s"


async def test_the_errnos_of_connect_errors(servers: HttpServers) -> None:
    _, path = servers.fresh()
    with pytest.raises(NotFound) as missing:
        async with open_http(servers.urls["http"] + path + "gone/"):
            pass
    assert missing.value.errno == errno.ENOENT
    (servers.root / "_forbidden" / path.strip("/")).mkdir()
    with pytest.raises(AuthError) as denied:
        async with open_http(servers.urls["http"] + "/_forbidden" + path):
            pass
    assert denied.value.errno == errno.EACCES


def settings_error(url: str, options: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as exc:
        settings_from(parse_source(url), options, section={})
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_settings_refuse_bad_input(tmp_path: Path) -> None:
    url = "https://example.org/pub/"
    assert "unknown option 'endpoint'" in settings_error(url, {"endpoint": "x"})
    assert "no query string" in settings_error("https://example.org/pub/?a=1", {})
    message = settings_error("https://jill:hunter2@example.org/pub/", {})
    assert "not in the URL" in message and "hunter2" not in message
    assert "without a username" in settings_error(url, {"password": "hunter2"})
    assert "expected Name:Value" in settings_error(url, {"header": "no colon here"})
    message = settings_error(url, {"header": "Bad Name: secret-token"})
    assert "secret-token" not in message
    assert "no such file" in settings_error(url, {"ca_bundle": str(tmp_path / "nope.pem")})
    pem = tmp_path / "ca.pem"
    pem.write_text("")
    assert "contradict" in settings_error(url, {"ca_bundle": str(pem), "insecure": "true"})
    assert "expected a positive number" in settings_error(url, {"timeout": "soon"})
    assert "expected a positive integer" in settings_error(url, {"connections": "0"})
    assert "expected true or false" in settings_error(url, {"insecure": "maybe"})


async def test_a_ca_bundle_that_is_no_pem_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as exc:
        async with open_http("https://127.0.0.1:9/", {"ca_bundle": str(junk)}):
            pass
    assert "not a PEM file of certificates" in str(exc.value)


def test_settings_from_options_url_and_config_file() -> None:
    s = settings_from(parse_source("https://Jill@Example.ORG:443/a%20b/c/"),
                      {"header": "X-One: 1 | Authorization: Bearer t0k3n"},
                      section={"password": "from-file", "timeout": "5", "connections": "4"})
    assert s.origin == "https://example.org" and s.base_path == "/a%20b/c/"
    assert (s.username, s.password, s.timeout, s.connections) == ("Jill", "from-file", 5, 4)
    assert s.headers == {"X-One": "1", "Authorization": "Bearer t0k3n"}
    # secrets stay out of the settings' repr (which a debugger or log might print)
    assert "from-file" not in repr(s) and "t0k3n" not in repr(s)
    plain = settings_from(parse_source("http://127.0.0.1:8080"), {}, section={})
    assert plain.url == "http://127.0.0.1:8080/"
