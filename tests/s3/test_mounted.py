"""S3 through a real kernel mount (``storefs mount`` as a user runs it, via the harness of
``tests/mount/conftest.py``), on moto and on Swift's S3 layer.

- a bucket that another client filled (s3fs and rclone metadata, keys with and without
  ``dir/`` markers) mounts with the right tree, modes, owners and mtimes;
- a directory of 100 files is renamed, and the bucket then holds them under the new
  prefix only;
- a 1 GiB file goes in and comes back with the same MD5 while the daemon's memory stays
  bounded (slow; Swift's S3 layer, whose ranged reads are efficient).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.mount.conftest import Mounted, make_mounted
from tests.s3._helpers import S3Server, raw_client, s3_server

pytestmark = [
    pytest.mark.mount,
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]

MiB = 1024 * 1024


@dataclass
class S3Mount:
    """A mount of a fresh prefix, and the server it lives on."""

    m: Mounted
    server: S3Server

    @property
    def bucket(self) -> str:
        return self.m.source.removeprefix("s3://").partition("/")[0]

    @property
    def prefix(self) -> str:
        p = self.m.source.removeprefix("s3://").partition("/")[2]
        return f"{p}/" if p else ""

    def raw(self) -> Any:
        """A plain boto3 client on the same server: "another tool"."""
        return raw_client(self.server)


def _s3_mount(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Iterator[S3Mount]:
    server = s3_server(request, name)
    for m in make_mounted(request, tmp_path, f"s3-{name}"):
        yield S3Mount(m, server)


@pytest.fixture(params=["moto", "swift"])
def s3_mount(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[S3Mount]:
    yield from _s3_mount(request, tmp_path, request.param)


@pytest.fixture
def swift_mount(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[S3Mount]:
    yield from _s3_mount(request, tmp_path, "swift")


def test_foreign_bucket_mounts_with_its_tree_modes_and_mtimes(s3_mount: S3Mount) -> None:
    bucket, prefix, raw, m = s3_mount.bucket, s3_mount.prefix, s3_mount.raw(), s3_mount.m
    objects: dict[str, tuple[bytes, dict[str, str], str | None]] = {
        # s3fs: st_mode in decimal (0100755), owner, integer seconds
        "bin/tool": (b"#!/bin/sh\n", {"mode": "33261", "uid": "1000", "gid": "100",
                                      "mtime": "1600000000"}, None),
        # rclone: mtime as float seconds, no mode
        "photos/2023/img.jpg": (b"\xff\xd8" + b"j" * 998, {"mtime": "1700000000.5"}, None),
        # a marker with s3fs's directory mode (040750)
        "photos/": (b"", {"mode": "16872", "mtime": "1500000000"}, "application/x-directory"),
        "empty/": (b"", {}, "application/x-directory"),
        # no metadata at all, no marker above it
        "plain/readme.txt": (b"just bytes", {}, None),
    }
    for key, (body, meta, ctype) in objects.items():
        extra = {"ContentType": ctype} if ctype else {}
        raw.put_object(Bucket=bucket, Key=prefix + key, Body=body, Metadata=meta, **extra)
    m.remount()  # what another tool wrote, seen by a fresh mount
    root = m.path

    assert sorted(os.listdir(root)) == ["bin", "empty", "photos", "plain"]
    # right after the listing (`ls -l`): the marker's attributes, not a bare prefix's
    listed = os.stat(root / "photos")
    assert (stat.S_IMODE(listed.st_mode), listed.st_mtime) == (0o750, 1500000000)
    assert os.listdir(root / "empty") == []
    assert os.listdir(root / "photos") == ["2023"]

    tool = os.stat(root / "bin" / "tool")
    assert stat.S_ISREG(tool.st_mode) and stat.S_IMODE(tool.st_mode) == 0o755
    assert (tool.st_uid, tool.st_gid) == (1000, 100)
    assert tool.st_mtime == 1600000000
    assert (root / "bin" / "tool").read_bytes() == b"#!/bin/sh\n"

    img = os.stat(root / "photos" / "2023" / "img.jpg")
    assert img.st_size == 1000 and img.st_mtime_ns == 1_700_000_000_500_000_000

    photos = os.stat(root / "photos")
    assert stat.S_ISDIR(photos.st_mode) and stat.S_IMODE(photos.st_mode) == 0o750
    assert photos.st_mtime == 1500000000
    assert stat.S_ISDIR(os.stat(root / "plain").st_mode)  # implicit: no marker
    assert (root / "plain" / "readme.txt").read_bytes() == b"just bytes"

    # and what the mount writes, the other tool reads in s3fs's convention
    os.chmod(root / "plain" / "readme.txt", 0o600)
    os.utime(root / "plain" / "readme.txt", (1234567890, 1234567890))
    m.umount()  # uploads everything pending
    meta = raw.head_object(Bucket=bucket, Key=prefix + "plain/readme.txt")["Metadata"]
    assert int(meta["mode"]) == stat.S_IFREG | 0o600
    assert float(meta["mtime"]) == 1234567890
    m.mount()


def test_rename_of_a_directory_of_100_files(s3_mount: S3Mount) -> None:
    bucket, prefix, m = s3_mount.bucket, s3_mount.prefix, s3_mount.m
    src = m.path / "batch"
    src.mkdir()
    for i in range(100):
        (src / f"f{i:03d}.txt").write_bytes(f"file {i}\n".encode() * (i + 1))
    os.chmod(src / "f042.txt", 0o640)
    m.sh("sync")
    os.rename(src, m.path / "moved")

    assert not src.exists()
    moved = m.path / "moved"
    assert sorted(os.listdir(moved)) == [f"f{i:03d}.txt" for i in range(100)]
    for i in (0, 42, 99):
        assert (moved / f"f{i:03d}.txt").read_bytes() == f"file {i}\n".encode() * (i + 1)
    assert stat.S_IMODE(os.stat(moved / "f042.txt").st_mode) == 0o640

    m.umount()  # everything pending is in the bucket now
    pages = s3_mount.raw().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                       Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert not [k for k in keys if k.startswith(prefix + "batch/")]
    assert len([k for k in keys if k.startswith(prefix + "moved/f")]) == 100
    m.mount()
    assert len(os.listdir(m.path / "moved")) == 100


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # the peak resident size
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_one_gib_file_round_trip(swift_mount: S3Mount) -> None:
    m = swift_mount.m
    block = hashlib.sha256(b"storefs").digest() * (MiB // 32)
    written = hashlib.md5()
    with open(m.path / "big.bin", "wb") as f:
        for i in range(1024):
            piece = i.to_bytes(4, "big") + block[4:]
            written.update(piece)
            f.write(piece)
    peaks = [_peak_rss(m.pid())]
    m.umount()
    head = swift_mount.raw().head_object(Bucket=swift_mount.bucket,
                                         Key=swift_mount.prefix + "big.bin")
    assert head["ContentLength"] == 1 << 30
    assert head["ETag"].strip('"').endswith("-128")  # a multipart upload of 8 MiB parts
    # read it back from the server, not from pages the write left in the cache
    shutil.rmtree(m.cache_dir)
    m.mount()
    read = hashlib.md5()
    with open(m.path / "big.bin", "rb") as f:
        while piece := f.read(MiB):
            read.update(piece)
    assert read.hexdigest() == written.hexdigest()
    peaks.append(_peak_rss(m.pid()))
    # the daemon holds parts and pages, never the file
    assert max(peaks) < 512 * MiB, peaks
