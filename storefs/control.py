"""The control channel of a running mount: a Unix socket per mountpoint.

``storefs status`` and ``storefs umount`` talk to the daemon through it.  The socket lives
in ``/run/storefs`` (root) or ``$XDG_RUNTIME_DIR/storefs`` (else ``/tmp/storefs-UID``), is
named after the mountpoint, and is mode 0600 in a 0700 directory: only the mount's owner
can ask it anything.

Protocol: the client sends one JSON object and a newline (``{"cmd": "status"}``); the
daemon answers with JSON lines, progress first (``{"progress": "..."}``), and a last line
holding ``"done": true``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from storefs.errors import StorefsError

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[dict[str, Any], Send], Awaitable[dict[str, Any]]]


class ControlUnavailable(StorefsError):
    """No daemon answers for that mountpoint."""


def runtime_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/storefs")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / "storefs"
    return Path(f"/tmp/storefs-{os.geteuid()}")


def socket_path(mountpoint: Path | str) -> Path:
    real = os.path.realpath(mountpoint)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return runtime_dir() / f"{digest}.sock"


def runtime_dirs() -> list[Path]:
    """Where this user's daemons may have their sockets: ``runtime_dir()`` first, then the
    other places it picks when ``XDG_RUNTIME_DIR`` differs (a mount made at boot by mount(8)
    or systemd, before the user logged in, has none; ``sudo -u`` drops it)."""
    dirs = [runtime_dir()]
    if os.geteuid() != 0:
        for d in (Path(f"/run/user/{os.geteuid()}/storefs"), Path(f"/tmp/storefs-{os.geteuid()}")):
            if d not in dirs:
                dirs.append(d)
    return dirs


def all_sockets() -> list[Path]:
    return sorted(p for d in runtime_dirs() if d.is_dir() for p in d.glob("*.sock"))


def _prepare(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def serve(path: Path, handler: Handler, *,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Answer requests on ``path`` until cancelled."""
    _prepare(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old_umask)
    sock.listen(8)
    listener = trio.SocketListener(sock)
    task_status.started()
    try:
        async with trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                nursery.start_soon(_connection, stream, handler)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        await listener.aclose()


async def _connection(stream: trio.SocketStream, handler: Handler) -> None:
    async with stream:
        buf = b""
        while b"\n" not in buf:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            buf += chunk
        try:
            request = json.loads(buf.split(b"\n", 1)[0])
        except ValueError:
            await stream.send_all(b'{"done": true, "ok": false, "error": "bad request"}\n')
            return

        async def send(obj: dict[str, Any]) -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(json.dumps(obj).encode() + b"\n")

        try:
            result = await handler(request, send)
        except StorefsError as exc:
            result = {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("control request %s failed", request.get("cmd"))
            result = {"ok": False, "error": f"internal error: {exc}"}
        # the answer to "umount" goes out while the mount is shutting down around us
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await send({**result, "done": True})


def request(mountpoint: Path | str | None, cmd: dict[str, Any], *,
            path: Path | None = None, timeout: float | None = None,
            on_progress: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Ask the daemon of ``mountpoint`` (or at socket ``path``); returns the final line."""
    if path is None:
        name = socket_path(mountpoint or "").name
        path = next((d / name for d in runtime_dirs() if (d / name).exists()), None)
    target = path
    if target is None or not target.exists():
        raise ControlUnavailable(f"no storefs daemon for {mountpoint}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(target))
        except OSError as exc:
            raise ControlUnavailable(f"no storefs daemon answers for {mountpoint}: "
                                     f"{exc.strerror}") from exc
        buf = b""
        try:
            s.sendall(json.dumps(cmd).encode() + b"\n")
        except OSError as exc:  # the daemon is going away
            raise ControlUnavailable(f"the storefs daemon for {mountpoint} went away: "
                                     f"{exc.strerror}") from exc
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError as exc:
                raise StorefsError(f"the storefs daemon for {mountpoint} did not answer "
                                   f"within {timeout:.0f}s") from exc
            except OSError as exc:
                raise ControlUnavailable(f"the storefs daemon for {mountpoint} went away: "
                                         f"{exc.strerror}") from exc
            if not chunk:
                raise StorefsError(f"the storefs daemon for {mountpoint} closed the "
                                   "connection")
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    msg: dict[str, Any] = json.loads(line)
                except ValueError as exc:
                    raise StorefsError(f"the storefs daemon for {mountpoint} answered "
                                       f"something that is not JSON: {exc}") from exc
                if msg.get("done"):
                    return msg
                if "progress" in msg:
                    on_progress(str(msg["progress"]))
