"""Mount-table queries and unmounting (through fusermount3, which works for every user)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from storefs.errors import StorefsError


def mounts() -> list[tuple[str, str, str]]:
    """``(source, mountpoint, fstype)`` of every mount, from /proc/self/mounts."""
    out: list[tuple[str, str, str]] = []
    try:
        text = Path("/proc/self/mounts").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            out.append((_unescape(parts[0]), _unescape(parts[1]), parts[2]))
    return out


def _unescape(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal
    return field.encode().decode("unicode_escape")


def is_mounted(mountpoint: Path) -> bool:
    target = os.path.realpath(mountpoint)
    return any(mp == target for _, mp, _ in mounts())


def storefs_mounts() -> list[tuple[str, str]]:
    return [(src, mp) for src, mp, fs in mounts() if fs in ("fuse.storefs", "fuse")
            and (fs == "fuse.storefs" or src.startswith(("storefs", "mem:", "file:")))]


def unmount(mountpoint: Path, *, lazy: bool = False) -> None:
    """Unmount a FUSE mount; raises StorefsError with fusermount's reason."""
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is None:
        raise StorefsError("fusermount3 not found (install the fuse3 package)")
    args = [tool, "-u"] + (["-z"] if lazy else []) + [str(mountpoint)]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["unmount failed"])[-1]
        reason = reason.removeprefix(f"{tool}: ").removeprefix("fusermount3: ")
        raise StorefsError(f"cannot unmount {mountpoint}: {reason}")
