"""Where the S3 settings come from: options, environment, connector and storefs config
files, the AWS config and credentials files; and which wins.

Credentials are checked against Swift's S3 layer, which verifies signatures (moto accepts
any key): a mount that connects there used the right secret.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from storefs.backends.s3 import S3Backend, open_backend
from storefs.errors import AuthError, ConfigError
from storefs.source import parse_source
from tests.s3._helpers import S3Server, ensure_bucket, s3_server

BUCKET = "config-checks"


@pytest.fixture
def swift(request: pytest.FixtureRequest) -> S3Server:
    server = s3_server(request, "swift")
    ensure_bucket(server, BUCKET)
    return server


def private_file(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


async def works(backend: S3Backend) -> None:
    """Connected with the right credentials: a write and a read go through."""
    await backend.connect()
    try:
        await backend.put("probe", b"ok", {})
        assert await backend.get_range("probe", 0, 10) == b"ok"
    finally:
        await backend.aclose()


async def refused(backend: S3Backend) -> None:
    with pytest.raises(AuthError, match="credentials refused"):
        await backend.connect()
    await backend.aclose()


async def test_storefs_config_in_the_connector_shape(
    swift: S3Server, isolated_aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = swift.endpoint.removeprefix("http://")
    cfg = private_file(isolated_aws_env / "config.yaml", f"""\
s3:
  accessKeyId: {swift.access_key}
  secretAccessKey: {swift.secret_key}
  host: {host}
  tls: false
  bucket: {BUCKET}
  region_name: us-east-1
""")
    monkeypatch.setenv("STOREFS_CONFIG", str(cfg))
    backend = open_backend(parse_source(f"s3://{BUCKET}"), {})
    assert backend.settings.endpoint_url == swift.endpoint
    assert not backend.capabilities.conditional_put  # not AWS: auto means off
    await works(backend)


async def test_flat_connector_file_named_by_an_option(
    swift: S3Server, isolated_aws_env: Path
) -> None:
    path = private_file(isolated_aws_env / "s3.yaml", f"""\
endpoint_url: {swift.endpoint}
aws_access_key_id: {swift.access_key}
aws_secret_access_key: {swift.secret_key}
use_ssl: false
""")
    await works(open_backend(parse_source(f"s3://{BUCKET}"), {"config_file": str(path)}))


async def test_connector_file_readable_by_others_is_refused(isolated_aws_env: Path) -> None:
    path = isolated_aws_env / "s3.yaml"
    path.write_text("access_key: a\nsecret_key: b\n")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0644\); run: chmod 600"):
        open_backend(parse_source("s3://b"), {"config_file": str(path)})


async def test_unknown_file_settings_are_skipped_with_a_warning(
    isolated_aws_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = private_file(isolated_aws_env / "s3.yaml", "endpoint: http://127.0.0.1:9\n"
                        "colour: blue\n")
    with caplog.at_level(logging.WARNING):
        backend = open_backend(parse_source("s3://b"), {"config_file": str(path)})
    assert backend.settings.endpoint_url == "http://127.0.0.1:9"
    assert "ignoring unknown S3 setting 'colour'" in caplog.text


async def test_aws_profile_files(
    swift: S3Server, isolated_aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws = isolated_aws_env / ".aws"
    private_file(aws / "credentials", f"""\
[swift]
aws_access_key_id = {swift.access_key}
aws_secret_access_key = {swift.secret_key}
""")
    (aws / "config").write_text(f"""\
[profile swift]
region = us-east-1
endpoint_url = {swift.endpoint}
s3 =
    addressing_style = path
""")
    backend = open_backend(parse_source(f"s3://{BUCKET}"), {"profile": "swift"})
    assert backend.settings.endpoint_url == swift.endpoint
    await works(backend)
    monkeypatch.setenv("AWS_PROFILE", "swift")
    await works(open_backend(parse_source(f"s3://{BUCKET}"), {}))
    # -o profile beats keys in the environment, as in the AWS CLI
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", swift.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    await works(open_backend(parse_source(f"s3://{BUCKET}"), {"profile": "swift"}))
    with pytest.raises(ConfigError, match="AWS profile 'nope' not found"):
        open_backend(parse_source(f"s3://{BUCKET}"), {"profile": "nope"})


async def test_options_beat_environment_beats_files(
    swift: S3Server, isolated_aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = private_file(isolated_aws_env / "config.yaml", f"""\
s3:
  endpoint: {swift.endpoint}
  access_key: {swift.access_key}
  secret_key: {swift.secret_key}
""")
    monkeypatch.setenv("STOREFS_CONFIG", str(cfg))
    source = parse_source(f"s3://{BUCKET}")
    await works(open_backend(source, {}))
    # the environment's (wrong) secret wins over the file's
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", swift.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    await refused(open_backend(source, {}))
    # and the options' over the environment's
    await works(open_backend(source, {"access_key": swift.access_key,
                                      "secret_key": swift.secret_key}))
    # an unreachable endpoint in the environment loses to the option too
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    backend = open_backend(source, {"endpoint": swift.endpoint})
    assert backend.settings.endpoint_url == swift.endpoint
    await works(backend)


@pytest.mark.parametrize(("options", "message"), [
    ({"colour": "blue"}, "unknown S3 option 'colour'"),
    ({"endpoint": "http://h:1", "tls": "true"}, "says http:// but tls=true"),
    ({"endpoint": "ftp://h"}, "is not an http:// or https:// URL"),
    ({"endpoint": ""}, "endpoint is empty"),
    ({"part_size": "1M"}, "S3 parts are 5 MiB to 5 GiB"),
    ({"part_size": "lots"}, "expected a size such as"),
    ({"addressing_style": "sideways"}, "expected path, virtual or auto"),
    ({"sse": "rot13"}, "expected AES256 or aws:kms"),
    ({"sse_kms_key_id": "k"}, "needs sse=aws:kms"),
    ({"conditional_writes": "maybe"}, "expected auto, on or off"),
    ({"anonymous": "perhaps"}, "expected true or false"),
    ({"copy_multipart_threshold": "6G"}, "at most 5 GiB in one request"),
])
async def test_bad_options_are_refused_with_their_reason(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        open_backend(parse_source("s3://b"), options)


async def test_defaults_follow_the_endpoint() -> None:
    aws = open_backend(parse_source("s3://b/p"), {"region": "eu-west-1"})
    assert aws.settings.endpoint_url is None and aws.settings.addressing_style is None
    assert aws.capabilities.conditional_put  # AWS has If-None-Match / If-Match writes
    assert aws.capabilities.max_key_length == 1024 - len("p/")
    assert aws.describe() == "s3://b/p at AWS S3 (eu-west-1)"
    other = open_backend(parse_source("s3://b"), {"endpoint": "minio.example:9000",
                                                  "tls": "false"})
    assert other.settings.endpoint_url == "http://minio.example:9000"
    assert other.settings.addressing_style == "path"
    assert not other.capabilities.conditional_put
    forced = open_backend(parse_source("s3://b"), {"endpoint": "https://minio.example",
                                                   "conditional_writes": "on",
                                                   "part_size": "16MiB"})
    assert forced.capabilities.conditional_put and forced.capabilities.part_size == 16 << 20
