"""renameat2(2) through libc, for RENAME_EXCHANGE and RENAME_NOREPLACE on local files
(``os.rename`` has no flags argument)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_renameat2 = _libc.renameat2
_renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                       ctypes.c_uint]
_renameat2.restype = ctypes.c_int


def renameat2(src: Path, dst: Path, flags: int) -> None:
    if _renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(src))


def renameat2_exchange(a: Path, b: Path) -> None:
    renameat2(a, b, RENAME_EXCHANGE)
