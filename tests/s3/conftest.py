"""S3 tests run in an environment of their own: no AWS variables, config files or storefs
configuration of the developer's account leak in, and boto3 never asks an instance
metadata service for credentials (that would be traffic off this machine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

_CLEARED = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@pytest.fixture(autouse=True)
def isolated_aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A home for AWS and storefs files (``tmp_path/home``), empty until a test writes it."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / ".aws" / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / ".aws" / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    empty = home / "storefs.yaml"
    empty.write_text("")
    monkeypatch.setenv("STOREFS_CONFIG", str(empty))
    yield home
