"""The stores under test: how each contestant reaches the same place, and the shared data.

Every contestant of a store mounts the same root (a directory, a bucket, a container or a
Manta directory).  Under it:

- ``ds/`` is the shared, read-only data set, written once per store by a neutral client
  (a plain copy for file://, ``rclone copy`` for S3, GCS and Swift, httpx for Manta):
  ``ds/big.bin`` (SIZE random bytes: sequential and random reads) and ``ds/many/`` (ENTRIES
  small files: ``ls -l`` and stats);
- ``w-<contestant>/`` is each contestant's scratch directory for the write scenarios.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.servers import Servers

BUCKET = "bench"
MANY_ENTRY_SIZE = 100

#: variables this machine sets that break rclone's and s3fs' S3 clients on plain HTTP
#: (rclone: "LoadCustomCABundleError ... unsupported transport")
_DROP_ENV = ("AWS_CA_BUNDLE",)


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env.update(extra or {})
    return env


@dataclass
class Store:
    """One store, as each kind of contestant reaches it."""

    name: str
    #: storefs: source, -o options, environment
    source: str
    options: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    #: rclone: the remote (``name:bucket`` or a local path) and the config file text
    rclone_remote: str | None = None
    rclone_config: str = ""
    #: s3fs: bucket, endpoint, region, credentials
    s3fs: dict[str, str] | None = None
    #: the raw directory (file store only)
    raw_dir: Path | None = None
    #: Manta server record (manta store only)
    manta: dict[str, Any] | None = None
    #: server PIDs (to report their CPU use too)
    server_pids: list[int] = field(default_factory=list)


def open_store(name: str, servers: Servers, workdir: Path) -> Store:
    """Start what ``name`` needs and say how to reach it (the store is still empty)."""
    if name == "file":
        root = workdir / "store-file"
        root.mkdir(parents=True, exist_ok=True)
        return Store(name, f"file://{root}", rclone_remote=str(root), raw_dir=root)
    if name in ("s3", "s3-moto"):
        server = "moto" if name == "s3-moto" else "swift"
        info = servers.get(server)
        if server == "moto":
            endpoint, access, secret, region = (info["endpoint"], info["access_key"],
                                                info["secret_key"], info["region"])
            conditional = "on"
        else:
            endpoint, access, secret, region = (info["s3_endpoint"], info["s3_access_key"],
                                                info["s3_secret_key"], info["s3_region"])
            conditional = "off"  # Swift's S3 layer answers 501 to If-None-Match on PUT
        conf = (f"[s3]\ntype = s3\nprovider = Other\nenv_auth = false\n"
                f"access_key_id = {access}\nsecret_access_key = {secret}\n"
                f"endpoint = {endpoint}\nregion = {region}\nforce_path_style = true\n")
        return Store(
            name, f"s3://{BUCKET}",
            options={"endpoint": endpoint, "region": region,
                     "conditional_writes": conditional},
            env={"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret,
                 "AWS_EC2_METADATA_DISABLED": "true"},
            rclone_remote=f"s3:{BUCKET}", rclone_config=conf,
            s3fs={"bucket": BUCKET, "url": endpoint, "region": region, "access": access,
                  "secret": secret},
            server_pids=servers.pids(server))
    if name == "gcs":
        info = servers.get("gcs")
        endpoint = info["endpoint"]
        conf = (f"[gcs]\ntype = google cloud storage\nanonymous = true\n"
                f"endpoint = {endpoint}/storage/v1/\n")
        return Store(name, f"gs://{BUCKET}",
                     options={"endpoint": endpoint, "anonymous": "true"},
                     env={"NO_GCE_CHECK": "true"},
                     rclone_remote=f"gcs:{BUCKET}", rclone_config=conf,
                     server_pids=servers.pids("gcs"))
    if name == "swift":
        info = servers.get("swift")
        conf = (f"[swift]\ntype = swift\nuser = {info['user']}\nkey = {info['key']}\n"
                f"auth = {info['auth_url']}\n")
        return Store(name, f"swift://{BUCKET}",
                     env={"ST_AUTH": info["auth_url"], "ST_USER": info["user"],
                          "ST_KEY": info["key"]},
                     rclone_remote=f"swift:{BUCKET}", rclone_config=conf,
                     server_pids=servers.pids("swift"))
    if name == "manta":
        info = servers.get("manta")
        return Store(name, f"manta:/{info['login']}/stor/{BUCKET}",
                     options={"url": info["url"], "user": info["login"],
                              "key_file": info["key_file"]},
                     env={"SSH_AUTH_SOCK": ""}, manta=info,
                     server_pids=servers.pids("manta"))
    raise ValueError(f"unknown store {name!r}")


# -- the shared data set ---------------------------------------------------------------


def make_staging(staging: Path, size: int, entries: int) -> Path:
    """``staging/ds`` with big.bin and many/ (made once per run, reused by every store)."""
    ds = staging / "ds"
    big = ds / "big.bin"
    many = ds / "many"
    if big.exists() and big.stat().st_size == size and many.is_dir() \
            and len(os.listdir(many)) == entries:
        return ds
    shutil.rmtree(ds, ignore_errors=True)
    many.mkdir(parents=True)
    with open(big, "wb") as f:
        left = size
        while left:
            n = min(left, 16 << 20)
            f.write(os.urandom(n))
            left -= n
    body = b"x" * MANY_ENTRY_SIZE
    for i in range(entries):
        (many / f"f{i:05d}").write_bytes(body)
    return ds


def rclone_cmd(store: Store, conf: Path, *args: str) -> list[str]:
    return ["rclone", "--config", str(conf), *args]


def manta_client(store: Store) -> httpx.Client:
    """A plain httpx client signed as the store's account (the Manta ceiling's client)."""
    from storefs.backends.manta_auth import MantaAuth, Principal, load_key_file

    assert store.manta is not None
    auth = MantaAuth(load_key_file(Path(store.manta["key_file"])), Principal(store.manta["login"]))
    return httpx.Client(base_url=store.manta["url"], auth=auth, timeout=600,
                        limits=httpx.Limits(max_connections=32), trust_env=False)


def manta_mkdir(client: httpx.Client, path: str) -> None:
    r = client.put(path, headers={"Content-Type": "application/json; type=directory"})
    if r.status_code not in (200, 204):
        raise RuntimeError(f"manta mkdir {path}: {r.status_code} {r.text[:200]}")


def _file_chunks(path: Path, block: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(block):
            yield chunk


def upload_dataset(store: Store, ds: Path, conf: Path) -> float:
    """Put the data set at ``<root>/ds``; returns the seconds it took."""
    t0 = time.monotonic()
    if store.raw_dir is not None:
        target = store.raw_dir / "ds"
        if not target.exists():
            shutil.copytree(ds, target)
        return time.monotonic() - t0
    if store.manta is not None:
        root = store.source.removeprefix("manta:")
        with manta_client(store) as c:
            for d in (root, f"{root}/ds", f"{root}/ds/many"):
                manta_mkdir(c, d)
            big = ds / "big.bin"
            r = c.put(f"{root}/ds/big.bin", content=_file_chunks(big),
                      headers={"Content-Length": str(big.stat().st_size),
                               "Content-Type": "application/octet-stream"})
            r.raise_for_status()
            names = sorted(os.listdir(ds / "many"))

            def put(name: str) -> None:
                resp = c.put(f"{root}/ds/many/{name}", content=(ds / "many" / name).read_bytes())
                resp.raise_for_status()

            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                list(pool.map(put, names))
        return time.monotonic() - t0
    assert store.rclone_remote is not None
    env = tool_env()
    if store.name == "gcs":
        endpoint = store.options["endpoint"]
        r = httpx.post(f"{endpoint}/storage/v1/b", params={"project": "bench"},
                       json={"name": BUCKET}, trust_env=False)
        if r.status_code not in (200, 409):
            raise RuntimeError(f"creating the GCS bucket: {r.status_code} {r.text[:200]}")
    else:
        subprocess.run(rclone_cmd(store, conf, "mkdir", store.rclone_remote), check=True,
                       env=env)
    # one PUT for big.bin (no multipart) so every reader reads the same kind of object
    subprocess.run(rclone_cmd(store, conf, "copy", str(ds), f"{store.rclone_remote}/ds",
                              "--transfers", "16", "--checkers", "16",
                              "--s3-upload-cutoff", "5G"), check=True, env=env)
    return time.monotonic() - t0
