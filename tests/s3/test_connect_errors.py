"""Every way a mount can fail to reach its bucket ends in one line naming the cause.

``connect`` runs before the mount goes live; what it raises is what ``storefs mount``
prints.  Each message must name the cause, fit on one line and never show a secret.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from storefs.backends.s3 import open_backend
from storefs.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    NotFound,
    PermissionDenied,
    StorefsError,
)
from storefs.source import parse_source
from tests.s3._helpers import S3Server, backend_for, ensure_bucket, raw_client, s3_server, unique
from tests.servers._shared import free_port, shared_server
from tests.servers.fixture_moto import launch_moto

SECRET = "very-secret-key-value"


async def connect_fails(source: str, options: dict[str, str]) -> StorefsError:
    backend = open_backend(parse_source(source), options)
    try:
        with pytest.raises(StorefsError) as info:
            await backend.connect()
    finally:
        await backend.aclose()
    err = info.value
    text = str(err)
    assert "\n" not in text and "Traceback" not in text
    assert SECRET not in text and options.get("secret_key", SECRET) not in text
    return err


@pytest.mark.parametrize("server_name", ["moto", "swift"])
async def test_missing_bucket(request: pytest.FixtureRequest, server_name: str) -> None:
    server = s3_server(request, server_name)
    err = await connect_fails("s3://no-such-bucket-here/x", server.options())
    assert isinstance(err, NotFound)
    assert str(err) == f"s3://no-such-bucket-here: no such bucket at {server.endpoint}"


async def test_wrong_secret_key(request: pytest.FixtureRequest) -> None:
    # moto accepts any credentials; Swift's S3 layer checks the signature
    server = s3_server(request, "swift")
    ensure_bucket(server, "connect-checks")
    err = await connect_fails("s3://connect-checks", server.options(secret_key=SECRET))
    assert isinstance(err, AuthError)
    assert "credentials refused" in str(err) and "SignatureDoesNotMatch" in str(err)
    assert server.endpoint in str(err)


async def test_unknown_access_key(request: pytest.FixtureRequest) -> None:
    server = s3_server(request, "swift")
    ensure_bucket(server, "connect-checks")
    err = await connect_fails("s3://connect-checks",
                              server.options(access_key="nobody:nobody", secret_key=SECRET))
    assert isinstance(err, AuthError)
    assert "access key this server does not know" in str(err)


async def test_unreachable_endpoint() -> None:
    port = free_port()  # nothing listens there
    err = await connect_fails("s3://bucket", {
        "endpoint": f"http://127.0.0.1:{port}", "access_key": "k", "secret_key": SECRET})
    assert isinstance(err, ConnectError)
    assert str(err) == f"cannot reach S3 endpoint http://127.0.0.1:{port}: connection refused"


async def test_https_to_a_plain_http_server(request: pytest.FixtureRequest) -> None:
    server = s3_server(request, "moto")
    endpoint = server.endpoint.replace("http://", "https://")
    err = await connect_fails("s3://bucket", server.options(endpoint=endpoint))
    assert isinstance(err, ConnectError)
    assert "TLS handshake failed (is the endpoint plain http?)" in str(err)


async def test_no_credentials_anywhere(request: pytest.FixtureRequest) -> None:
    server = s3_server(request, "moto")
    err = await connect_fails("s3://bucket", {"endpoint": server.endpoint})
    assert isinstance(err, AuthError)
    assert "no S3 credentials found" in str(err) and "-o anonymous" in str(err)


async def test_incomplete_credentials_are_refused_before_connecting() -> None:
    with pytest.raises(ConfigError, match="gives an S3 access key but no secret key"):
        open_backend(parse_source("s3://b"), {"access_key": "AKIAEXAMPLE"})


async def test_anonymous_access_to_a_public_bucket(request: pytest.FixtureRequest) -> None:
    # moto serves unsigned requests (as AWS does for public buckets); Swift's S3 layer has
    # no anonymous access at all
    server = s3_server(request, "moto")
    bucket = unique("public")
    ensure_bucket(server, bucket)
    raw = raw_client(server)
    raw.put_object(Bucket=bucket, Key="open.txt", Body=b"for everyone", ACL="public-read")
    raw.put_object(Bucket=bucket, Key="closed.txt", Body=b"owner only")
    backend = open_backend(parse_source(f"s3://{bucket}"),
                           {"endpoint": server.endpoint, "anonymous": ""})
    await backend.connect()
    try:
        assert await backend.get_range("open.txt", 0, 100) == b"for everyone"
        with pytest.raises(PermissionDenied, match=r"closed.txt: access denied \(403\)$"):
            await backend.get_range("closed.txt", 0, 100)
    finally:
        await backend.aclose()


async def test_anonymous_access_where_the_server_has_none(request: pytest.FixtureRequest) -> None:
    server = s3_server(request, "swift")
    ensure_bucket(server, "connect-checks")
    err = await connect_fails("s3://connect-checks",
                              {"endpoint": server.endpoint, "anonymous": "true"})
    assert str(err) == (f"s3://connect-checks at {server.endpoint}: the server refused to list "
                        "the bucket (HTTP 412); it may not allow anonymous access")


# -- TLS -----------------------------------------------------------------------------------


def _launch_tls_moto(workdir: Path) -> dict[str, Any]:
    """moto over HTTPS with a self-signed certificate for 127.0.0.1 (made with openssl)."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    info = launch_moto(workdir, cert=cert, key=key)
    info["cert"] = str(cert)
    return info


@pytest.fixture(scope="session")
def tls_moto(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return shared_server(tmp_path_factory, "moto-tls", _launch_tls_moto)


def _tls_server(info: dict[str, Any]) -> S3Server:
    return S3Server("moto-tls", info["endpoint"], "test", "test", "us-east-1", "on")


async def test_untrusted_certificate_is_refused(tls_moto: dict[str, Any]) -> None:
    server = _tls_server(tls_moto)
    err = await connect_fails("s3://bucket", server.options())
    assert isinstance(err, ConnectError)
    assert str(err) == (f"S3 endpoint {server.endpoint}: TLS certificate not trusted "
                        "(set -o ca_bundle=FILE, or -o insecure)")


@pytest.mark.parametrize("trust", ["ca_bundle", "insecure"])
async def test_trusting_the_certificate_connects(tls_moto: dict[str, Any], trust: str) -> None:
    server = _tls_server(tls_moto)
    bucket = unique("tls")
    options = {"ca_bundle": tls_moto["cert"]} if trust == "ca_bundle" else {"insecure": "true"}
    backend = backend_for(server, "placeholder", **options)
    # create the bucket through the same trusted channel
    client = await backend.client()
    client.create_bucket(Bucket=bucket)
    await backend.aclose()
    backend = backend_for(server, bucket, **options)
    await backend.connect()
    try:
        await backend.put("hello", b"over TLS", {})
        assert await backend.get_range("hello", 0, 100) == b"over TLS"
    finally:
        await backend.aclose()


async def test_missing_ca_bundle_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ca_bundle=.*: no such file"):
        open_backend(parse_source("s3://b"), {"ca_bundle": str(tmp_path / "nope.pem")})
