"""Parsing of mount sources: ``manta:/jill/stor``, ``s3://bucket/prefix``, ``file:///srv``...

A ``Source`` says which backend to open and where; it carries no credentials (those come
from the environment, config files and ``-o`` options, handled by each backend).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from storefs.errors import ConfigError

#: scheme -> backend module under storefs.backends (imported only when used)
SCHEMES: dict[str, str] = {
    "mem": "mem",
    "file": "file",
    "manta": "manta",
    "s3": "s3",
    "gs": "gcs",
    "swift": "swift",
    "http": "http",
    "https": "http",
}

_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


@dataclass(frozen=True)
class Source:
    """A parsed mount source.

    ``scheme`` is the backend's scheme as typed (``https`` stays ``https``); ``host`` is
    the endpoint host when the URL names one (``manta://HOST/...``, ``https://HOST/...``);
    ``bucket`` is the bucket, container, memory-store name or, for file:// and manta:, the
    first path element; ``path`` is the rest, without leading or trailing ``/``.
    """

    raw: str
    scheme: str
    host: str
    bucket: str
    path: str

    @property
    def backend_module(self) -> str:
        return SCHEMES[self.scheme]

    @property
    def prefix(self) -> str:
        """The path as a key prefix: ``""`` or ``"a/b/"``."""
        return f"{self.path}/" if self.path else ""


def _split_path(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    for p in parts:
        if p in (".", ".."):
            raise ConfigError(f"source path may not contain '{p}'")
    return parts


def parse_source(raw: str) -> Source:
    """Parse a mount source; raises ``ConfigError`` with a one-line reason."""
    if not raw or raw.strip() != raw:
        raise ConfigError(f"malformed source {raw!r}: empty or surrounded by spaces")
    scheme, sep, rest = raw.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        known = ", ".join(f"{s}:" for s in SCHEMES)
        raise ConfigError(f"malformed source {raw!r}: expected one of {known}")
    if scheme in ("http", "https"):
        url = urllib.parse.urlsplit(raw)
        if not url.hostname:
            raise ConfigError(f"malformed source {raw!r}: no host")
        return Source(raw, scheme, url.netloc, "", "/".join(_split_path(url.path)))
    host = ""
    if rest.startswith("//"):
        host, _, rest = rest[2:].partition("/")
    elif scheme in ("s3", "gs", "mem"):
        raise ConfigError(f"malformed source {raw!r}: expected {scheme}://NAME[/PATH]")
    if scheme == "file":
        if host not in ("", "localhost"):
            raise ConfigError(f"malformed source {raw!r}: file:// takes an absolute path")
        if not raw.startswith("file:///") and not raw.startswith("file://localhost/"):
            raise ConfigError(f"malformed source {raw!r}: file:// takes an absolute path")
        parts = _split_path(rest)
        return Source(raw, scheme, "", "", "/".join(parts))
    if scheme == "manta":
        # manta:/LOGIN/stor/path (endpoint from MANTA_URL) or manta://HOST/LOGIN/stor/path
        parts = _split_path(rest)
        if len(parts) < 2 or parts[1] not in ("stor", "public", "jobs", "reports", "uploads"):
            raise ConfigError(
                f"malformed source {raw!r}: expected manta:/LOGIN/stor[/PATH] "
                "or manta://HOST/LOGIN/stor[/PATH]"
            )
        return Source(raw, scheme, host, parts[0], "/".join(parts[1:]))
    if scheme == "swift":
        parts = _split_path(host + "/" + rest if host else rest)
        bucket = parts[0] if parts else ""
        return Source(raw, scheme, "", bucket, "/".join(parts[1:]))
    # s3, gs, mem: the "host" is the bucket / store name
    bucket = host
    if not bucket:
        raise ConfigError(f"malformed source {raw!r}: no {'bucket' if scheme != 'mem' else 'name'}")
    if not _BUCKET_RE.match(bucket):
        raise ConfigError(f"malformed source {raw!r}: invalid bucket name {bucket!r}")
    return Source(raw, scheme, "", bucket, "/".join(_split_path(rest)))
