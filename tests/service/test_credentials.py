"""Credentials from ``-o credfile=``: in the daemon's environment, never in ``ps``."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.service.conftest import STRANGER, daemon_pid, is_mounted, one_line_error, run

pytestmark = pytest.mark.mount


def s3_bucket(server: dict[str, Any]) -> str:
    name = f"svc-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=server["endpoint"], region_name=server["region"],
                 aws_access_key_id=server["access_key"],
                 aws_secret_access_key=server["secret_key"]).create_bucket(Bucket=name)
    return name


def no_ambient_credentials(tmp_path: Path) -> dict[str, str]:
    """The environment without any AWS credentials of the machine's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    (tmp_path / "empty.yaml").write_text("")
    env.update(AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent",
               STOREFS_CONFIG=str(tmp_path / "empty.yaml"))
    return env


def test_credentials_file_reaches_the_daemon_but_not_the_process_list(
        tmp_path: Path, mounts: list[Path], moto_server: dict[str, Any]) -> None:
    bucket = s3_bucket(moto_server)
    secret = f"sekrit-{uuid.uuid4().hex}"
    credfile = tmp_path / "s3.env"
    credfile.write_text("# credentials of the test bucket\n"
                        "export AWS_ACCESS_KEY_ID=test\n"
                        f"AWS_SECRET_ACCESS_KEY='{secret}'\n")
    credfile.chmod(0o600)
    mp = tmp_path / "mnt"
    mp.mkdir()
    mounts.append(mp)
    options = (f"endpoint={moto_server['endpoint']},region=us-east-1,"
               f"cache_dir={tmp_path / 'cache'}")
    env = no_ambient_credentials(tmp_path)
    # without the file there are no credentials at all
    refused = run("mount", "-t", "storefs", f"s3://{bucket}", str(mp), "-o", options, env=env)
    assert "no S3 credentials found" in one_line_error(refused, "storefs: ")
    proc = run("mount", "-t", "storefs", f"s3://{bucket}", str(mp), "-o",
               f"{options},credfile={credfile}", env=env)
    assert proc.returncode == 0, proc.stderr
    (mp / "report.txt").write_text("quarterly\n")
    pid = daemon_pid(mp)
    assert secret not in run("ps", "-eo", "args").stdout
    assert secret.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert f"AWS_SECRET_ACCESS_KEY={secret}".encode() in \
        Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert secret not in Path("/proc/self/mountinfo").read_text()
    assert run("umount", str(mp)).returncode == 0
    assert not is_mounted(mp)
    for log in (tmp_path / "cache").rglob("*.log"):
        assert secret not in log.read_text(errors="replace")
    got = boto3.client("s3", endpoint_url=moto_server["endpoint"], region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test").get_object(
        Bucket=bucket, Key="report.txt")["Body"].read()
    assert got == b"quarterly\n"


@pytest.mark.parametrize(("mode", "owner", "text", "message"), [
    (0o640, 0, "AWS_SECRET_ACCESS_KEY=s3cr3t-value\n",
     "is readable or writable by others (mode 0640); run: chmod 600 {path}"),
    (0o604, 0, "AWS_SECRET_ACCESS_KEY=s3cr3t-value\n",
     "is readable or writable by others (mode 0604); run: chmod 600 {path}"),
    (0o600, STRANGER, "AWS_SECRET_ACCESS_KEY=s3cr3t-value\n",
     f"belongs to {STRANGER}, not to root; run: chown root {{path}}"),
    (0o600, 0, "OS_USERNAME=jill\nread -sr OS_PASSWORD_INPUT s3cr3t-value\n",
     "line 2: expected NAME=VALUE (shell commands are not run: write each value itself)"),
    (0o600, 0, "export OS_PASSWORD=$OS_PASSWORD_INPUT # s3cr3t-value\n",
     "line 1: variables and commands are not expanded"),
    (0o600, 0, 'OS_PASSWORD="s3cr3t-value\n', "line 1: unbalanced double quote"),
])
def test_unsafe_or_malformed_credentials_files_are_refused(
        tmp_path: Path, mounts: list[Path], mode: int, owner: int, text: str,
        message: str) -> None:
    credfile = tmp_path / "creds.env"
    credfile.write_text(text)
    credfile.chmod(mode)
    os.chown(credfile, owner, 0)
    mp = tmp_path / "mnt"
    mp.mkdir()
    mounts.append(mp)
    proc = run("mount", "-t", "storefs", "mem://creds", str(mp), "-o", f"credfile={credfile}")
    line = one_line_error(proc, f"mount.storefs: credentials file {credfile}")
    assert message.format(path=credfile) in line
    assert "s3cr3t" not in proc.stderr
    assert not is_mounted(mp)


def test_missing_credentials_file(tmp_path: Path, mounts: list[Path]) -> None:
    mp = tmp_path / "mnt"
    mp.mkdir()
    proc = run("mount", "-t", "storefs", "mem://creds", str(mp), "-o",
               f"credfile={tmp_path}/absent.env")
    one_line_error(proc, f"mount.storefs: credentials file {tmp_path}/absent.env: "
                         "No such file or directory")
