"""Manta through a real kernel mount (``storefs mount`` as a user runs it).

Each test mounts with the credentials a user would have (key file, ssh-agent key, sub-user
with a role) and checks what the store then holds, through the test server's request
counts: renames are SnapLinks on v1 and copies on v2, chmod writes no data, a 1 GiB file
comes back with the same MD5 while the mount's memory stays bounded.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers.fixture_manta import MantaServer

pytestmark = [
    pytest.mark.mount,
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]


def storefs(*args: str, env: dict[str, str],
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "storefs", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user with no Manta settings, no agent and an empty ~/.ssh."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MANTA_") and k not in ("SSH_AUTH_SOCK", "STOREFS_CONFIG")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), **extra)
    return env


@contextlib.contextmanager
def mounted(tmp_path: Path, source: str, env: dict[str, str],
            options: dict[str, str] | None = None) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    args = ["mount", source, str(mnt), "--cache-dir", str(tmp_path / "cache")]
    if options:
        args += ["-o", ",".join(f"{k}={v}" for k, v in options.items())]
    done = storefs(*args, env=env)
    assert done.returncode == 0, done.stderr
    try:
        yield mnt
    finally:
        # umount waits for pending uploads: afterwards the store holds everything
        out = storefs("umount", str(mnt), env=env)
        assert out.returncode == 0, out.stderr


def daemon_pid(mnt: Path, env: dict[str, str]) -> int:
    status = storefs("status", str(mnt), env=env).stdout
    m = re.search(rf" on {re.escape(str(mnt))} \(pid (\d+)", status)
    assert m, status
    return int(m.group(1))


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # the peak resident size
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_mount_with_a_key_file(manta_server: MantaServer, tmp_path: Path) -> None:
    base = manta_server.fresh_dir("mnt")
    env = user_env(tmp_path, MANTA_URL=manta_server.url, MANTA_USER="jill")
    with mounted(tmp_path, f"manta:{base}", env,
                 {"key_file": manta_server.keys["ecdsa"]["private"]}) as mnt:
        (mnt / "notes").mkdir()
        (mnt / "notes" / "a.txt").write_text("from a key file\n")
        assert (mnt / "notes" / "a.txt").read_text() == "from a key file\n"
    assert manta_server.ops(f"{base}/notes/a.txt").get("PutObject") == 1


def test_mount_with_an_agent_key(manta_server: MantaServer, tmp_path: Path) -> None:
    base = manta_server.fresh_dir("mnt")
    # what a Manta user has in their shell: the key is in ssh-agent, named by SHA256
    env = user_env(tmp_path, MANTA_URL=manta_server.url, MANTA_USER="jill",
                   MANTA_KEY_ID=manta_server.keys["agent"]["sha256"],
                   SSH_AUTH_SOCK=manta_server.agent_sock)
    with mounted(tmp_path, f"manta:{base}", env) as mnt:
        (mnt / "via-agent").write_bytes(b"signed by the agent")
        assert sorted(os.listdir(mnt)) == ["via-agent"]
    assert manta_server.ops(f"{base}/via-agent").get("PutObject") == 1


def test_mount_refuses_bad_credentials(manta_server: MantaServer, tmp_path: Path) -> None:
    base = manta_server.fresh_dir("mnt")
    env = user_env(tmp_path, MANTA_URL=manta_server.url, MANTA_USER="jill")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = storefs("mount", f"manta:{base}", str(mnt), "--cache-dir", str(tmp_path / "c"),
                   "-o", f"key_file={manta_server.keys['stranger']['private']}", env=env)
    assert done.returncode != 0
    md5 = manta_server.keys["stranger"]["md5"]
    assert done.stderr.strip().splitlines() == [
        f"storefs: manta: key {md5} is not registered for user jill (KeyDoesNotExist)"]
    assert not os.path.ismount(mnt)


def test_mount_as_subuser_with_role(manta_server: MantaServer, tmp_path: Path) -> None:
    base = manta_server.fresh_dir("mnt")
    env = user_env(tmp_path, MANTA_URL=manta_server.url, MANTA_USER="jill",
                   MANTA_SUBUSER="bob", MANTA_ROLE="writer")
    with mounted(tmp_path, f"manta:{base}", env,
                 {"key_file": manta_server.keys["bob"]["private"]}) as mnt:
        (mnt / "d").mkdir()
        (mnt / "d" / "by-bob").write_bytes(b"sub-user data")
        assert (mnt / "d" / "by-bob").read_bytes() == b"sub-user data"
    assert manta_server.ops(f"{base}/d/by-bob").get("PutObject") == 1


def test_chmod_rewrites_no_data(manta_server: MantaServer, tmp_path: Path) -> None:
    base = manta_server.fresh_dir("mnt")
    env = user_env(tmp_path, MANTA_URL=manta_server.url, MANTA_USER="jill")
    opts = {"key_file": manta_server.keys["rsa"]["private"]}
    with mounted(tmp_path, f"manta:{base}", env, opts) as mnt:
        (mnt / "f").write_bytes(os.urandom(100_000))
    before = manta_server.ops(f"{base}/f")
    with mounted(tmp_path, f"manta:{base}", env, opts) as mnt:
        os.chmod(mnt / "f", 0o600)
        os.utime(mnt / "f", (1_600_000_000, 1_600_000_000))
    after = manta_server.ops(f"{base}/f")
    assert after.get("PutObject", 0) == before.get("PutObject", 0) == 1
    assert after.get("PutMetadata", 0) > before.get("PutMetadata", 0)
    with mounted(tmp_path, f"manta:{base}", env, opts) as mnt:
        st = os.stat(mnt / "f")
        assert (st.st_mode & 0o777, int(st.st_mtime)) == (0o600, 1_600_000_000)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_directory_tree_rename(manta_server: MantaServer, manta_v2_server: MantaServer,
                               tmp_path: Path, version: str) -> None:
    server = manta_server if version == "v1" else manta_v2_server
    base = server.fresh_dir("mnt")
    env = user_env(tmp_path, MANTA_URL=server.url, MANTA_USER="jill")
    files = {"top.txt": b"1", "sub/a.bin": os.urandom(50_000), "sub/deeper/b": b"bbb"}
    with mounted(tmp_path, f"manta:{base}", env,
                 {"key_file": server.keys["rsa"]["private"]}) as mnt:
        for rel, data in files.items():
            (mnt / "tree" / rel).parent.mkdir(parents=True, exist_ok=True)
            (mnt / "tree" / rel).write_bytes(data)
        (mnt / "tree" / "empty").mkdir()
        os.sync()
        os.rename(mnt / "tree", mnt / "moved")
        assert not (mnt / "tree").exists()
        for rel, data in files.items():
            assert (mnt / "moved" / rel).read_bytes() == data
        assert (mnt / "moved" / "empty").is_dir()
    moved = server.ops(f"{base}/moved/")
    if version == "v1":
        # every file a SnapLink: no bytes went through the client again
        assert moved.get("PutSnapLink") == len(files)
        assert moved.get("PutObject", 0) == 0
    else:
        # v2 is known from the Server header: copies, and no link is even tried
        assert moved.get("PutObject") == len(files)
        assert "PutSnapLink" not in moved


@pytest.mark.slow
def test_one_gib_file_round_trip(manta_server: MantaServer, tmp_path: Path) -> None:
    base = manta_server.fresh_dir("mnt")
    env = user_env(tmp_path, MANTA_URL=manta_server.url, MANTA_USER="jill")
    block = hashlib.sha256(b"storefs").digest() * (1 << 15)  # 1 MiB
    written = hashlib.md5()
    with mounted(tmp_path, f"manta:{base}", env,
                 {"key_file": manta_server.keys["rsa"]["private"]}) as mnt:
        with open(mnt / "big.bin", "wb") as f:
            for i in range(1024):
                piece = i.to_bytes(4, "big") + block[4:]
                written.update(piece)
                f.write(piece)
        pid = daemon_pid(mnt, env)
        read = hashlib.md5()
        with open(mnt / "big.bin", "rb") as f:
            while piece := f.read(1 << 20):
                read.update(piece)
        assert read.hexdigest() == written.hexdigest()
        peak = rss(pid)
    # the store holds the same bytes (its MD5 is base64)
    head = httpx.head(f"{manta_server.url}{base}/big.bin", auth=manta_server.auth)
    assert head.headers["content-md5"] == base64.b64encode(written.digest()).decode()
    assert int(head.headers["content-length"]) == 1 << 30
    # the mount holds parts, never the file
    assert peak < 768 * 1024 * 1024, peak
