"""Start a test server as a detached child that outlives the test that started it.

A session server is stopped by PID at the end of the session (``_shared.stop_all``), often
by another process than the one that started it (the xdist controller).  The ``Popen``
object of the starter must therefore neither be garbage-collected while the server runs
(``Popen.__del__`` warns "subprocess is still running", and pytest turns warnings into
errors) nor warn when the starting process exits; ``spawn`` keeps it referenced and, at
exit, reaps it if it is gone or lets it go on as the session's to stop.
"""

from __future__ import annotations

import atexit
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

_RUNNING: list[subprocess.Popen[bytes]] = []


def spawn(args: Sequence[str], log: Path, env: Mapping[str, str] | None = None
          ) -> subprocess.Popen[bytes]:
    """Start ``args`` in a new session (its own process group, so that killing the group
    takes its children), stdin from /dev/null, stdout and stderr appended to ``log``."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(args), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=dict(os.environ if env is None else env),
        )
    _RUNNING.append(proc)
    return proc


@atexit.register
def _release() -> None:
    for proc in _RUNNING:
        if proc.poll() is None:
            # still serving: the session stops it by PID; this process merely lets go
            proc.returncode = 0
