"""POSIX attributes in metadata: read what s3fs, rclone, gcsfuse, swift and mchattr wrote;
write what their users' tools read back."""

from __future__ import annotations

import base64
import json
import stat
import urllib.parse

from storefs.backends.base import ETag, ObjectMeta
from storefs.fs import posix_meta
from storefs.fs.attrs import Attr

DEFAULTS = posix_meta.Defaults(uid=1000, gid=100, file_mode=0o640, dir_mode=0o750)
NS = 1_000_000_000


def meta(md: dict[str, str], *, is_dir: bool = False, size: int = 5,
         mtime: float = 1_600_000_000.0) -> ObjectMeta:
    return ObjectMeta(key="k/" if is_dir else "k", size=size, etag=ETag("e"), mtime=mtime,
                      is_dir=is_dir, metadata=md)


def test_s3fs_metadata() -> None:
    d = posix_meta.decode(meta({"mode": "33188", "uid": "501", "gid": "20",
                                "mtime": "1700000000"}), DEFAULTS).attr
    assert (d.mode, d.uid, d.gid, d.mtime_ns) == (0o100644, 501, 20, 1_700_000_000 * NS)


def test_rclone_float_mtime_and_swift_upload_mtime() -> None:
    d = posix_meta.decode(meta({"mtime": "1700000000.123456789"}), DEFAULTS).attr
    assert d.mtime_ns == 1_700_000_000_123_456_789
    d = posix_meta.decode(meta({"mtime": "1700000000.500000"}), DEFAULTS).attr
    assert d.mtime_ns == 1_700_000_000_500_000_000
    assert d.mode == stat.S_IFREG | 0o640 and (d.uid, d.gid) == (1000, 100)


def test_gcsfuse_and_google_transfer_keys() -> None:
    d = posix_meta.decode(meta({"gcsfuse_mtime": "2023-11-14T22:13:20.123456789Z",
                                "goog-reserved-posix-mode": "600",
                                "goog-reserved-posix-uid": "7",
                                "goog-reserved-posix-gid": "8"}), DEFAULTS).attr
    assert d.mtime_ns == 1_700_000_000 * NS + 123_456_789
    assert (d.mode, d.uid, d.gid) == (stat.S_IFREG | 0o600, 7, 8)
    d = posix_meta.decode(meta({"goog-reserved-file-mtime": "1700000001"}), DEFAULTS).attr
    assert d.mtime_ns == 1_700_000_001 * NS


def test_symlink_conventions() -> None:
    s3fs = posix_meta.decode(meta({"mode": str(stat.S_IFLNK | 0o777)}), DEFAULTS)
    assert stat.S_ISLNK(s3fs.attr.mode) and s3fs.symlink_target is None
    gcs = posix_meta.decode(meta({"goog-reserved-file-is-symlink": "true"}), DEFAULTS)
    assert stat.S_ISLNK(gcs.attr.mode)
    old = posix_meta.decode(meta({"gcsfuse_symlink_target": "a/b"}, size=0), DEFAULTS)
    assert stat.S_ISLNK(old.attr.mode) and old.symlink_target == b"a/b"
    assert old.attr.size == 3


def test_no_metadata_uses_the_mount_defaults_and_the_store_mtime() -> None:
    f = posix_meta.decode(meta({}), DEFAULTS).attr
    assert f.mode == stat.S_IFREG | 0o640 and f.mtime_ns == 1_600_000_000 * NS
    d = posix_meta.decode(meta({}, is_dir=True), DEFAULTS).attr
    assert d.mode == stat.S_IFDIR | 0o750 and d.size == 0


def test_garbage_values_fall_back_instead_of_failing() -> None:
    d = posix_meta.decode(meta({"mode": "rw-r--r--", "uid": "-", "mtime": "yesterday",
                                "xattr": "%7Bnot json"}), DEFAULTS)
    assert d.attr.mode == stat.S_IFREG | 0o640 and d.attr.uid == 1000
    assert d.attr.mtime_ns == 1_600_000_000 * NS and d.xattrs == {}


def test_encode_round_trips_in_both_styles() -> None:
    attr = Attr(stat.S_IFREG | 0o751, 12, 34, 9, 1_234_567_890_123_456_789,
                1_234_567_890_000_000_001, 1_234_567_899 * NS)
    xattrs = {"user.color": b"blue", "user.Bin": b"\x00\xff", "user.mode": b"tricky"}
    for style in ("s3fs", "gcsfuse"):
        md = posix_meta.encode(attr, xattrs, style, atime=True)
        back = posix_meta.decode(meta(md, size=9), DEFAULTS)
        assert (back.attr.mode, back.attr.uid, back.attr.gid, back.attr.mtime_ns) == \
            (attr.mode, attr.uid, attr.gid, attr.mtime_ns), style
        assert back.xattrs == xattrs, style


def test_s3fs_compatible_encoding() -> None:
    attr = Attr(stat.S_IFREG | 0o644, 0, 0, 1, 1_700_000_000 * NS, 0, 0)
    md = posix_meta.encode(attr, {"user.color": b"blue", "user.Odd": b"\x01"}, "s3fs")
    assert md["mode"] == "33188" and md["mtime"] == "1700000000.000000000"
    assert md["color"] == "blue"  # plain token names stay plain metadata keys
    blob = json.loads(urllib.parse.unquote(md["xattr"]))
    assert blob == {"user.Odd": base64.b64encode(b"\x01").decode()}


def test_facts_are_read_only_names_in_the_storefs_namespace() -> None:
    m = ObjectMeta(key="k", size=1, etag=ETag("abc"), mtime=0, content_type="text/plain",
                   checksums={"md5": "xyz"}, storage_class="GLACIER")
    assert posix_meta.facts(m) == {"user.storefs.etag": b"abc",
                                   "user.storefs.content_type": b"text/plain",
                                   "user.storefs.storage_class": b"GLACIER",
                                   "user.storefs.md5": b"xyz"}
