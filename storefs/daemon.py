"""Daemonising like other FUSE tools: ``storefs mount`` returns only when the mount is live.

The parent forks before any trio loop or SDK client exists; the child starts a new
session and runs the mount; a pipe carries one line back: ``ok`` once the kernel answers on
the mountpoint, or ``error: <reason>`` (credentials refused, endpoint unreachable...).  The
parent prints the reason and exits non-zero, or exits 0.  Only then does the child let go
of the terminal (stdio to /dev/null; logs go to the log file).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

#: exit status of the parent when the child died without saying anything
CHILD_DIED = 70


def _to_devnull() -> None:
    fd = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(fd, target)
    if fd > 2:
        os.close(fd)


def daemonize(main: Callable[[Callable[[str | None], None]], int]) -> int:
    """Run ``main(ready)`` in a detached child; return the parent's exit status.

    ``main`` must call ``ready(None)`` once the mount is live, or ``ready(message)`` when
    it cannot mount (then return non-zero)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            line = pipe.readline().decode(errors="replace").rstrip("\n")
        if line == "ok":
            return 0
        if line.startswith("error: "):
            print(f"storefs: {line[7:]}", file=sys.stderr)
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            return code if code > 0 else 1
        _, status = os.waitpid(pid, 0)
        print(f"storefs: the mount process exited before the mount was live "
              f"(status {os.waitstatus_to_exitcode(status)}); see the log file",
              file=sys.stderr)
        return CHILD_DIED

    # the child
    os.close(read_end)
    os.setsid()
    said = False

    def ready(error: str | None) -> None:
        nonlocal said
        if said:
            return
        said = True
        message = "ok\n" if error is None else f"error: {error}\n"
        try:
            os.write(write_end, message.encode())
            os.close(write_end)
        except OSError:
            pass
        if error is None:
            _to_devnull()

    code = 1
    try:
        code = main(ready)
    except BaseException as exc:  # the child must never unwind into the parent's code
        ready(f"internal error: {type(exc).__name__}: {exc}")
    finally:
        if not said:
            ready("the mount ended before it was live")
        os._exit(code)
