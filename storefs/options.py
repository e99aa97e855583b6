"""Mount options: parsing ``-o opt[,opt...]``, with the defaults of docs/CONFIGURATION.md.

Three kinds of options are accepted:

* FUSE / mount(8) options passed to the kernel: ``ro``, ``rw``, ``allow_other``,
  ``allow_root``, ``default_permissions``, ``noatime``, ``nodev``, ``nosuid``, ``noexec``...
* storefs' own (``STOREFS_OPTIONS`` below): timeouts, cache sizes, ownership overrides;
* the backend's (each backend module's ``OPTIONS``): endpoint, credentials, ...

An unknown option is refused with the nearest known name, before anything is mounted.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from storefs.errors import ConfigError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: options given to the kernel as they are (flags), or with a value
KERNEL_FLAGS = frozenset({
    "allow_other", "allow_root", "default_permissions", "auto_unmount",
    "noatime", "atime", "relatime", "norelatime", "strictatime", "nostrictatime",
    "nodiratime", "diratime", "lazytime", "nodev", "dev", "nosuid", "suid", "noexec", "exec",
    "sync", "async", "dirsync",
})
KERNEL_VALUES = frozenset({"fsname", "subtype"})

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str, what: str = "size") -> int:
    """``4096``, ``512k``, ``8M``, ``2GiB``, ``1.5G`` -> bytes (powers of 1024)."""
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"{what}={text!r}: expected a size such as 512M or 2G")
    number, unit, _ = m.groups()
    scale = {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": 1024 * GiB}[unit.lower()]
    return int(float(number) * scale)


def _float(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name}={text!r}: expected a number of seconds") from None
        if value < 0:
            raise ConfigError(f"{name}={text!r}: must not be negative")
        return value

    return parse


def _int(name: str, minimum: int = 0) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.strip().isdigit() or int(text) < minimum:
            raise ConfigError(f"{name}={text!r}: expected an integer >= {minimum}")
        return int(text)

    return parse


def _octal(name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 8)
        except ValueError:
            raise ConfigError(f"{name}={text!r}: expected an octal mode such as 022") from None
        if not 0 <= value <= 0o7777:
            raise ConfigError(f"{name}={text!r}: expected an octal mode such as 022")
        return value

    return parse


def _size(name: str) -> Callable[[str], int]:
    return lambda text: parse_size(text, name)


def _bool(name: str) -> Callable[[str], bool]:
    def parse(text: str) -> bool:
        low = text.strip().lower()
        if low in ("", "1", "yes", "true", "on"):
            return True
        if low in ("0", "no", "false", "off"):
            return False
        raise ConfigError(f"{name}={text!r}: expected yes or no")

    return parse


@dataclass(frozen=True)
class Spec:
    parse: Callable[[str], object]
    default: object
    help: str


#: storefs' own options: name -> (parser, default, one-line help)
STOREFS_OPTIONS: dict[str, Spec] = {
    "attr_timeout": Spec(_float("attr_timeout"), 1.0,
                         "seconds the kernel and storefs trust file attributes"),
    "entry_timeout": Spec(_float("entry_timeout"), 5.0,
                          "seconds the kernel trusts a name -> inode lookup"),
    "negative_timeout": Spec(_float("negative_timeout"), 1.0,
                             "seconds a name known to be absent stays absent"),
    "dir_timeout": Spec(_float("dir_timeout"), 60.0,
                        "seconds a directory listing answers lookups and ls"),
    "cache_dir": Spec(str, "", "where pages and pending uploads live (default ~/.cache/storefs)"),
    "cache_size": Spec(_size("cache_size"), 2 * GiB, "size cap of the page cache"),
    "chunk_size": Spec(_size("chunk_size"), 1 * MiB, "size of one cached page / ranged GET"),
    "readahead": Spec(_size("readahead"), 32 * MiB, "most bytes read ahead of a sequential reader"),
    "read_parallel": Spec(_int("read_parallel", 1), 8, "ranged GETs at once"),
    "write_parallel": Spec(_int("write_parallel", 1), 4, "parts uploaded at once"),
    "stream_uploads": Spec(_bool("stream_uploads"), True,
                           "send parts of a new big file while it is written"),
    "sync_close": Spec(_bool("sync_close"), True,
                       "close waits until the store has the file (false: it goes up in the "
                       "background, write_parallel at once)"),
    "uid": Spec(_int("uid"), None, "show every file as owned by this user"),
    "gid": Spec(_int("gid"), None, "show every file as owned by this group"),
    "umask": Spec(_octal("umask"), None, "clear these permission bits on every file shown"),
    "file_mode": Spec(_octal("file_mode"), 0o644, "mode of files with no stored mode"),
    "dir_mode": Spec(_octal("dir_mode"), 0o755, "mode of directories with no stored mode"),
    "retry_timeout": Spec(_float("retry_timeout"), 30.0,
                          "seconds a request waiting in the foreground keeps retrying"),
    "kernel_readahead": Spec(_size("kernel_readahead"), 4 * MiB,
                             "the kernel's read-ahead for the mount (root only)"),
    "kernel_pages": Spec(_bool("kernel_pages"), True,
                         "hand each page fetched for a random reader to the kernel's page "
                         "cache whole"),
}


@dataclass
class MountOptions:
    """Every option of one mount, parsed."""

    read_only: bool = False
    kernel: list[str] = field(default_factory=list)
    own: dict[str, object] = field(default_factory=dict)
    backend: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> object:
        return self.own.get(name, STOREFS_OPTIONS[name].default)

    def number(self, name: str) -> float:
        value = self.get(name)
        assert isinstance(value, int | float)
        return float(value)

    def integer(self, name: str) -> int:
        value = self.get(name)
        assert isinstance(value, int)
        return value

    def optional_int(self, name: str) -> int | None:
        value = self.get(name)
        return value if isinstance(value, int) else None

    @property
    def allow_other(self) -> bool:
        return "allow_other" in self.kernel

    def cache_dir(self) -> Path:
        explicit = str(self.get("cache_dir") or "")
        if explicit:
            return Path(explicit).expanduser()
        if os.geteuid() == 0 and "XDG_CACHE_HOME" not in os.environ:
            return Path("/var/cache/storefs")
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "storefs"


def split_options(text: str) -> list[str]:
    """``a=1,b,c=x\\,y`` -> ``["a=1", "b", "c=x,y"]`` (a backslash escapes a comma)."""
    out: list[str] = []
    cur = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] == ",":
            cur += ","
            i += 2
            continue
        if ch == ",":
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    if cur:
        out.append(cur)
    return out


def parse_options(items: list[str], backend_options: Mapping[str, str],
                  scheme: str) -> MountOptions:
    """Parse ``-o`` items (already split) into ``MountOptions``; unknown names are refused."""
    opts = MountOptions()
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip()
        if name == "ro":
            opts.read_only = True
        elif name == "rw":
            opts.read_only = False
        elif name in KERNEL_FLAGS and not eq:
            if name not in opts.kernel:
                opts.kernel.append(name)
        elif name in KERNEL_VALUES and eq:
            opts.kernel.append(f"{name}={value}")
        elif name in STOREFS_OPTIONS:
            spec = STOREFS_OPTIONS[name]
            if not eq and not isinstance(spec.default, bool):
                raise ConfigError(f"option {name} needs a value: {name}=...")
            opts.own[name] = spec.parse(value)
        elif name in backend_options:
            opts.backend[name] = value if eq else "true"
        else:
            known = sorted({*STOREFS_OPTIONS, *backend_options, *KERNEL_FLAGS, "ro", "rw"})
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown option '{name}' for {scheme}: mounts{hint}")
    if opts.allow_other and "default_permissions" not in opts.kernel:
        # other users get in: let the kernel enforce the modes shown
        opts.kernel.append("default_permissions")
    return opts


def describe_options(backend_options: Mapping[str, str]) -> str:
    """Help text listing every option (for ``storefs mount --help``)."""
    lines = ["storefs options:"]
    for name, spec in STOREFS_OPTIONS.items():
        default = "" if spec.default in (None, "") else f" [{_show(spec.default)}]"
        lines.append(f"  {name}=...{default}  {spec.help}")
    if backend_options:
        lines.append("backend options:")
        lines += [f"  {name}  {text}" for name, text in backend_options.items()]
    lines.append("kernel options: ro rw " + " ".join(sorted(KERNEL_FLAGS)))
    return "\n".join(lines)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and value >= MiB and value % MiB == 0:
        return f"{value // GiB}G" if value % GiB == 0 else f"{value // MiB}M"
    return str(value)
