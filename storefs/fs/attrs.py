"""POSIX attributes of one file, directory or symlink as the mount shows them."""

from __future__ import annotations

import stat
import time
from dataclasses import dataclass, replace

NS = 1_000_000_000


def now_ns() -> int:
    return time.time_ns()


@dataclass(frozen=True)
class Attr:
    """What ``stat`` shows (before the mount's uid=/gid=/umask= overrides)."""

    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    atime_ns: int
    ctime_ns: int

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)

    def with_(self, **changes: int) -> Attr:
        return replace(self, **changes)
