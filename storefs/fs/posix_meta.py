"""POSIX attributes in object metadata, in the conventions other tools use.

A bucket is rarely written by one tool, so decoding reads every convention listed in
``shared/specs/interop.md`` (s3fs, rclone, s3sync, gcsfuse, Google's transfer tools,
``swift upload``, Manta's ``mchattr``), and encoding writes the one the store's most common
peer writes (``Capabilities.metadata_style``):

``s3fs`` (S3, Swift, Manta, mem, file)
    ``mode`` = decimal ``st_mode`` with the file-type bits, ``uid``, ``gid`` decimal,
    ``mtime`` and ``ctime`` = seconds with a nanosecond fraction (rclone and ``swift upload``
    read and write the same ``mtime``), ``atime`` likewise when set explicitly.
``gcsfuse`` (GCS)
    ``gcsfuse_mtime`` = RFC 3339 with nanoseconds, ``goog-reserved-posix-mode`` = octal
    permission bits, ``goog-reserved-posix-uid`` / ``-gid``, symlinks flagged with
    ``goog-reserved-file-is-symlink: true``.

Extended attributes: ``user.NAME`` is kept as metadata key ``NAME`` itself when NAME is a
lower-case header token and the value is printable ASCII (so ``getfattr -d`` shows what
``aws s3api head-object`` shows, as goofys does); anything else (binary values, upper-case or
reserved names) goes into s3fs's ``xattr`` key: URL-encoded JSON of name -> base64 value.
Facts the store reports are exposed read-only as ``user.storefs.*``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import stat
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from storefs.backends.base import ObjectMeta
from storefs.fs.attrs import NS, Attr

#: metadata keys that carry POSIX attributes in some convention: never shown as xattrs
RESERVED_KEYS = frozenset({
    "mode", "uid", "gid", "mtime", "atime", "ctime", "xattr",
    "permissions", "owner", "group", "md5chksum",
    "gcsfuse_mtime", "gcsfuse_symlink_target",
    "goog-reserved-file-mtime", "goog-reserved-posix-mode", "goog-reserved-posix-uid",
    "goog-reserved-posix-gid", "goog-reserved-file-is-symlink",
})

#: the read-only facts namespace
FACTS_PREFIX = "user.storefs."
XATTR_KEY = "xattr"

_TOKEN = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
_PRINTABLE = re.compile(r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$")


@dataclass(frozen=True)
class Defaults:
    """Attributes of objects whose metadata says nothing (written by a tool that keeps no
    POSIX attributes): the mounting user and the mount's file/dir modes."""

    uid: int
    gid: int
    file_mode: int = 0o644
    dir_mode: int = 0o755


@dataclass(frozen=True)
class Decoded:
    attr: Attr
    #: ``user.*`` extended attributes (full names) -> values
    xattrs: dict[str, bytes]
    #: symlink target kept in metadata (older gcsfuse); None when the body holds it
    symlink_target: bytes | None = None


def _int(value: str | None, base: int = 10) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip(), base)
    except ValueError:
        return None


def _seconds_ns(value: str | None) -> int | None:
    """``1700000000``, ``1700000000.5`` or ``1700000000.123456789`` -> ns (exactly)."""
    if value is None:
        return None
    value = value.strip()
    whole, _, frac = value.partition(".")
    if not whole.lstrip("-").isdigit() or (frac and not frac.isdigit()):
        return None
    ns = int(whole) * NS
    if frac:
        ns += int((frac + "000000000")[:9]) * (-1 if whole.startswith("-") else 1)
    return ns


def _rfc3339_ns(value: str | None) -> int | None:
    """gcsfuse's ``2023-11-14T22:13:20.123456789Z`` -> ns (datetime keeps only µs)."""
    if not value:
        return None
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$",
                 value.strip())
    if not m:
        return None
    base, frac, zone = m.groups()
    when = dt.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return int(when.timestamp()) * NS + int(((frac or "") + "000000000")[:9])


def format_seconds(ns: int) -> str:
    """ns -> ``seconds.nanoseconds``, the s3fs/rclone/swift ``mtime`` form."""
    sec, frac = divmod(ns, NS)
    return f"{sec}.{frac:09d}"


def format_rfc3339(ns: int) -> str:
    sec, frac = divmod(ns, NS)
    base = dt.datetime.fromtimestamp(sec, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


def is_symlink_meta(md: Mapping[str, str]) -> bool:
    mode = _int(md.get("mode"))
    if mode is not None and stat.S_ISLNK(mode):
        return True
    if md.get("goog-reserved-file-is-symlink", "").lower() == "true":
        return True
    return "gcsfuse_symlink_target" in md


def _mode(md: Mapping[str, str]) -> int | None:
    """Permission and type bits from whichever key is present (None: none is)."""
    for key, base in (("mode", 10), ("permissions", 10), ("goog-reserved-posix-mode", 8)):
        value = _int(md.get(key), base)
        if value is not None and 0 <= value < 1 << 20:
            return value
    return None


def _decode_blob(raw: str | None) -> dict[str, bytes]:
    if not raw:
        return {}
    try:
        parsed = json.loads(urllib.parse.unquote(raw))
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    out: dict[str, bytes] = {}
    for name, value in parsed.items():
        if isinstance(name, str) and isinstance(value, str):
            try:
                out[name] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                out[name] = value.encode()
    return out


def decode(meta: ObjectMeta, defaults: Defaults) -> Decoded:
    """The POSIX view of one object, directory marker or listing entry."""
    md = meta.metadata
    # whole seconds: listings and HEADs of one object report its time with different
    # precision (S3: milliseconds vs seconds), and a file's times must not flicker
    store_ns = int(meta.mtime) * NS
    symlink = not meta.is_dir and is_symlink_meta(md)
    mode = _mode(md)
    if meta.is_dir:
        kind, perms = stat.S_IFDIR, defaults.dir_mode
    elif symlink:
        kind, perms = stat.S_IFLNK, 0o777
    else:
        kind, perms = stat.S_IFREG, defaults.file_mode
    if mode is not None:
        perms = stat.S_IMODE(mode)
    uid = _int(md.get("uid")) if "uid" in md else _int(md.get("owner"))
    if uid is None:
        uid = _int(md.get("goog-reserved-posix-uid"))
    gid = _int(md.get("gid")) if "gid" in md else _int(md.get("group"))
    if gid is None:
        gid = _int(md.get("goog-reserved-posix-gid"))
    mtime = _seconds_ns(md.get("mtime"))
    if mtime is None:
        mtime = _rfc3339_ns(md.get("gcsfuse_mtime"))
    if mtime is None:
        mtime = _seconds_ns(md.get("goog-reserved-file-mtime"))
    if mtime is None:
        mtime = store_ns
    atime = _seconds_ns(md.get("atime"))
    ctime = _seconds_ns(md.get("ctime"))
    target = md.get("gcsfuse_symlink_target")
    size = meta.size
    if symlink and target is not None:
        size = len(target.encode())
    attr = Attr(
        mode=kind | perms,
        uid=defaults.uid if uid is None else uid,
        gid=defaults.gid if gid is None else gid,
        size=0 if meta.is_dir else size,
        mtime_ns=mtime,
        atime_ns=mtime if atime is None else atime,
        ctime_ns=mtime if ctime is None else ctime,
    )
    xattrs = _decode_blob(md.get(XATTR_KEY))
    for key, value in md.items():
        if key not in RESERVED_KEYS and _TOKEN.match(key):
            xattrs.setdefault(f"user.{key}", value.encode())
    return Decoded(attr, xattrs, target.encode() if target is not None else None)


def direct_key(name: str, value: bytes) -> str | None:
    """The metadata key that holds xattr ``name`` directly, or None if it goes to the blob."""
    if not name.startswith("user."):
        return None
    key = name[5:]
    if key in RESERVED_KEYS or not _TOKEN.match(key):
        return None
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    return key if _PRINTABLE.match(text) else None


def encode(attr: Attr, xattrs: Mapping[str, bytes], style: str, *,
           atime: bool = False) -> dict[str, str]:
    """Metadata for an object with ``attr`` and ``xattrs``, in ``style``'s convention.

    ``atime`` adds the access time (only when it was set explicitly: it changes on every
    read otherwise and is not worth an object rewrite)."""
    md: dict[str, str] = {}
    if style == "gcsfuse":
        md["gcsfuse_mtime"] = format_rfc3339(attr.mtime_ns)
        md["goog-reserved-posix-mode"] = f"{stat.S_IMODE(attr.mode):o}"
        md["goog-reserved-posix-uid"] = str(attr.uid)
        md["goog-reserved-posix-gid"] = str(attr.gid)
        md["ctime"] = format_seconds(attr.ctime_ns)
        if attr.is_symlink:
            md["goog-reserved-file-is-symlink"] = "true"
    else:
        md["mode"] = str(attr.mode)
        md["uid"] = str(attr.uid)
        md["gid"] = str(attr.gid)
        md["mtime"] = format_seconds(attr.mtime_ns)
        md["ctime"] = format_seconds(attr.ctime_ns)
        if atime:
            md["atime"] = format_seconds(attr.atime_ns)
    blob: dict[str, str] = {}
    for name, value in sorted(xattrs.items()):
        key = direct_key(name, value)
        if key is not None:
            md[key] = value.decode("ascii")
        else:
            blob[name] = base64.b64encode(value).decode("ascii")
    if blob:
        md[XATTR_KEY] = urllib.parse.quote(json.dumps(blob, separators=(",", ":")), safe="")
    return md


def metadata_size(md: Mapping[str, str]) -> int:
    """Bytes the store counts against its metadata limit (keys + values, as S3 does)."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in md.items())


def facts(meta: ObjectMeta) -> dict[str, bytes]:
    """Read-only ``user.storefs.*`` attributes: what ``head-object`` would show."""
    out: dict[str, bytes] = {}
    if meta.etag:
        out[FACTS_PREFIX + "etag"] = meta.etag.encode()
    if meta.content_type:
        out[FACTS_PREFIX + "content_type"] = meta.content_type.encode()
    if meta.storage_class:
        out[FACTS_PREFIX + "storage_class"] = meta.storage_class.encode()
    for algo, value in sorted(meta.checksums.items()):
        out[FACTS_PREFIX + algo] = value.encode()
    return out
