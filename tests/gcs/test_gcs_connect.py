"""What ``connect`` says before a gs:// mount goes live, and how credentials are found.

Service-account credentials are exercised for real: a key made here, whose ``token_uri``
points at a small OAuth token endpoint on loopback, so google-auth signs a JWT, trades it
for an access token and the SDK sends it to the emulator, as it would against Google.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from storefs.backends.gcs import GcsBackend, open_backend
from storefs.errors import AuthError, ConfigError, ConnectError, NotFound, StorefsError
from storefs.source import parse_source
from tests.servers._shared import free_port

ROOT = Path(__file__).resolve().parents[2]


class TokenEndpoint:
    """An OAuth2 token endpoint on 127.0.0.1 that grants or refuses every JWT it gets."""

    def __init__(self, grant: bool) -> None:
        self.grant = grant
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.calls += 1
                if outer.grant:
                    status, body = 200, {"access_token": "ya29.test-token", "expires_in": 3600,
                                         "token_type": "Bearer"}
                else:
                    status, body = 400, {"error": "invalid_grant",
                                         "error_description": "Invalid JWT Signature."}
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def service_account_file(path: Path, token_uri: str) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "storefs-test",
        "private_key_id": "0123456789abcdef", "private_key": pem,
        "client_email": "mounter@storefs-test.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": token_uri,
    }))
    path.chmod(0o600)
    return path


@pytest.fixture
def granting() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(grant=True)
    yield endpoint
    endpoint.close()


@pytest.fixture
def refusing() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(grant=False)
    yield endpoint
    endpoint.close()


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    return text


async def test_missing_bucket(gcs_server: dict[str, Any]) -> None:
    backend = GcsBackend("no-such-bucket-here", endpoint=gcs_server["endpoint"], anonymous=True)
    with pytest.raises(NotFound) as err:
        await backend.connect()
    assert one_line(err.value) == "gs://no-such-bucket-here: no such bucket"


async def test_unreachable_endpoint() -> None:
    port = free_port()  # nothing listens there
    backend = GcsBackend("b", endpoint=f"http://127.0.0.1:{port}", anonymous=True, timeout=5)
    with pytest.raises(ConnectError) as err:
        await backend.connect()
    assert one_line(err.value) == (
        f"gs://b: cannot reach GCS at http://127.0.0.1:{port}: connection refused")


async def test_service_account_key_is_used(gcs_server: dict[str, Any], bucket: str,
                                           tmp_path: Path, granting: TokenEndpoint) -> None:
    key = service_account_file(tmp_path / "sa.json", granting.url)
    backend = open_backend(parse_source(f"gs://{bucket}/x"),
                           {"endpoint": gcs_server["endpoint"], "credentials": str(key)})
    assert not backend.anonymous
    await backend.connect()
    await backend.put("f", b"with a token", {})
    assert await backend.get_range("f", 0, 100) == b"with a token"
    assert granting.calls >= 1  # the key was traded for an access token
    await backend.aclose()


async def test_refused_service_account(gcs_server: dict[str, Any], bucket: str,
                                       tmp_path: Path, refusing: TokenEndpoint) -> None:
    key = service_account_file(tmp_path / "sa.json", refusing.url)
    backend = GcsBackend(bucket, endpoint=gcs_server["endpoint"], credentials_file=str(key))
    with pytest.raises(AuthError) as err:
        await backend.connect()
    text = one_line(err.value)
    assert text.startswith(f"gs://{bucket}: credentials refused by the token endpoint")
    assert "invalid_grant" in text
    assert "PRIVATE KEY" not in text


async def test_token_endpoint_unreachable(gcs_server: dict[str, Any], bucket: str,
                                          tmp_path: Path) -> None:
    key = service_account_file(tmp_path / "sa.json", f"http://127.0.0.1:{free_port()}/token")
    backend = GcsBackend(bucket, endpoint=gcs_server["endpoint"], credentials_file=str(key))
    with pytest.raises(ConnectError) as err:
        await backend.connect()
    assert one_line(err.value).startswith(f"gs://{bucket}: cannot reach the token endpoint")


async def test_credentials_file_missing_or_garbage(tmp_path: Path) -> None:
    backend = GcsBackend("b", credentials_file=str(tmp_path / "nope.json"))
    with pytest.raises(ConfigError) as err:
        await backend.connect()
    assert one_line(err.value) == f"gcs: credentials file {tmp_path / 'nope.json'}: no such file"
    junk = tmp_path / "junk.json"
    junk.write_text('{"type": "nonsense"}')
    backend = GcsBackend("b", credentials_file=str(junk))
    with pytest.raises(AuthError) as err2:
        await backend.connect()
    assert one_line(err2.value).startswith(f"gcs: credentials file {junk} is not usable")


def test_no_credentials_at_all_names_the_ways_to_get_some(tmp_path: Path) -> None:
    # in a child process: google-auth reads NO_GCE_CHECK at import, and it must not ask
    # the metadata server (169.254.169.254) from a test
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOOGLE_", "STORAGE_EMULATOR", "CLOUDSDK", "GCE_"))}
    env.update(NO_GCE_CHECK="true", CLOUDSDK_CONFIG=str(tmp_path), HOME=str(tmp_path),
               GCE_METADATA_HOST=f"127.0.0.1:{free_port()}",
               GCE_METADATA_IP=f"127.0.0.1:{free_port()}", STOREFS_CONFIG="")
    code = ("import trio\n"
            "from storefs.backends.gcs import open_backend\n"
            "from storefs.source import parse_source\n"
            "b = open_backend(parse_source('gs://some-bucket'), {})\n"
            "try:\n    trio.run(b.connect)\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip()
    assert line.startswith("AuthError gcs: no Google credentials found: set "
                           "GOOGLE_APPLICATION_CREDENTIALS"), line
    assert "-o anonymous" in line


def test_emulator_variable_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("STOREFS_CONFIG", "")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")
    b = open_backend(parse_source("gs://bkt/some/prefix"), {})
    assert (b.endpoint, b.anonymous, b.prefix) == ("http://127.0.0.1:4443", True, "some/prefix/")
    b = open_backend(parse_source("gs://bkt"), {"endpoint": "https://gcs.example:9000",
                                               "connections": "4", "timeout": "7.5"})
    assert (b.endpoint, b.anonymous, b.connections) == ("https://gcs.example:9000", False, 4)
    assert b.describe() == "gs://bkt/ at https://gcs.example:9000"
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    assert open_backend(parse_source("gs://bkt"), {"anonymous": ""}).anonymous
    for bad in ({"connections": "0"}, {"timeout": "soon"}, {"anonymous": "maybe"}):
        with pytest.raises(ConfigError) as err:
            open_backend(parse_source("gs://bkt"), bad)
        one_line(err.value)


async def test_errors_are_storefs_errors_with_one_line(gcs: GcsBackend) -> None:
    for call in (gcs.head("missing"), gcs.get_range("missing", 0, 5),
                 gcs.copy("missing", "x"), gcs.set_metadata("missing", {})):
        with pytest.raises(StorefsError) as err:
            await call
        assert isinstance(err.value, NotFound)
        assert one_line(err.value).endswith("not found (HTTP 404)")
