"""The systemd units of systemd/: ``systemd-analyze verify``, and storefs@.service's own
commands run the way systemd runs them (its environment file, ``$CACHE_DIRECTORY``, a
``NOTIFY_SOCKET``; ExecStop, or SIGTERM as its KillSignal)."""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from storefs.mount_helper import parse_env_file
from tests.service.conftest import UNITS, Notifications, is_mounted, run

pytestmark = pytest.mark.mount

#: where systemd looks for a command given without a path
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
UNIT_FILES = sorted(p for p in UNITS.iterdir() if p.suffix in (".service", ".mount",
                                                                ".automount"))
ENV_EXAMPLES = sorted(UNITS.glob("*.env.example"))


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    parser.read_string(path.read_text())
    return parser


def test_there_are_units() -> None:
    names = {p.name for p in UNIT_FILES}
    assert {"storefs@.service", "mnt-manta.mount", "mnt-manta.automount", "mnt-data.mount",
            "mnt-data.automount"} <= names


@pytest.mark.parametrize("path", UNIT_FILES, ids=lambda p: p.name)
def test_systemd_analyze_verify(path: Path, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze not found: run scripts/install-mount-helper.sh --test")
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    proc = run("systemd-analyze", "verify", str(copy))
    # verify only warns (exit 0) about unknown keys and bad values: any output is a finding
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), \
        proc.stdout + proc.stderr


@pytest.mark.parametrize("path", [p for p in UNIT_FILES if p.suffix == ".mount"],
                         ids=lambda p: p.name)
def test_mount_units_options_are_what_the_helper_takes(path: Path, tmp_path: Path) -> None:
    section = unit(path)["Mount"]
    assert section["Type"] == "storefs"
    # setuid= and credfile= name things of the machine the example was written for
    options = [o for o in section["Options"].split(",")
               if not o.startswith(("setuid=", "credfile="))]
    proc = run("mount", "-f", "-t", "storefs", section["What"], str(tmp_path), "-o",
               ",".join(options))
    assert proc.returncode == 0, proc.stderr
    automount = path.with_suffix(".automount")
    assert unit(automount)["Automount"]["Where"] == section["Where"]


@pytest.mark.parametrize("path", ENV_EXAMPLES, ids=lambda p: p.name)
def test_environment_file_examples(path: Path) -> None:
    text = path.read_text()
    env = parse_env_file(text, path.name)  # what the helper and systemd both read
    assert {"STOREFS_SOURCE", "STOREFS_MOUNTPOINT", "STOREFS_OPTIONS"} <= set(env)
    assert "-m 0600" in text and "storefs refuses it" in text


def test_the_service_is_notify_and_stops_through_storefs_umount() -> None:
    svc = unit(UNITS / "storefs@.service")["Service"]
    assert svc["Type"] == "notify"
    assert svc["ExecStart"].startswith("storefs mount -f ")
    assert svc["ExecStop"].startswith("storefs umount ")
    assert (svc["KillMode"], svc["KillSignal"]) == ("mixed", "SIGTERM")
    umount_wait = int(re.search(r"--timeout=(\d+)", svc["ExecStop"]).group(1))  # type: ignore[union-attr]
    assert parse_seconds(svc["TimeoutStopSec"]) > umount_wait + 30


def parse_seconds(text: str) -> int:
    m = re.fullmatch(r"(\d+)(min|s)?", text)
    assert m, text
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


# -- storefs@.service's commands, run as systemd runs them ---------------------------------

def command(line: str, env: dict[str, str]) -> list[str]:
    """An Exec line as systemd expands it: ``${NAME}`` as a word of its own is one argument
    (even when empty), a leading ``-`` (failure ignored) dropped, the program looked up in
    systemd's search path."""
    words = [env.get(w[2:-1], "") if re.fullmatch(r"\$\{\w+\}", w) else
             re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), w)
             for w in shlex.split(line.lstrip("-+"))]
    program = shutil.which(words[0], path=SYSTEMD_PATH)
    assert program is not None, f"{words[0]} is not in systemd's search path {SYSTEMD_PATH}"
    return [program, *words[1:]]


@pytest.fixture(params=["path", "abstract"])
def notifications(request: pytest.FixtureRequest, tmp_path: Path) -> Notifications:
    address = str(tmp_path / "notify") if request.param == "path" \
        else f"@storefs-test-{uuid.uuid4().hex}"
    n = Notifications(address)
    request.addfinalizer(n.close)
    return n


@dataclass
class Service:
    """storefs@NAME.service for a file:// store, run as systemd runs it."""

    tmp: Path
    notifications: Notifications
    unit: configparser.SectionProxy = field(
        default_factory=lambda: unit(UNITS / "storefs@.service")["Service"])

    @property
    def store(self) -> Path:
        return self.tmp / "store"

    @property
    def mp(self) -> Path:
        return self.tmp / "mnt"

    def env(self, options: str) -> dict[str, str]:
        """What systemd gives the unit's commands: /etc/storefs/NAME.env (here a file of the
        same format) over ``Environment=``, and ``$CACHE_DIRECTORY``."""
        envfile = self.tmp / "NAME.env"
        envfile.write_text(f"STOREFS_SOURCE=file://{self.store}\nSTOREFS_MOUNTPOINT={self.mp}\n"
                           f"STOREFS_OPTIONS={options}\n")
        name, _, value = self.unit["Environment"].partition("=")
        cache = self.tmp / "cache"
        cache.mkdir(mode=0o700, exist_ok=True)
        return {"PATH": SYSTEMD_PATH, name: value,
                **parse_env_file(envfile.read_text(), "env"), "CACHE_DIRECTORY": str(cache)}

    @contextlib.contextmanager
    def started(self, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
        """ExecStart, its output (the journal) going to a file; killed if still running."""
        with open(self.tmp / "journal", "w") as out:
            proc = subprocess.Popen(command(self.unit["ExecStart"], env), cwd="/", text=True,
                                    env={**env, "NOTIFY_SOCKET": self.notifications.address},
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def journal(self) -> str:
        return (self.tmp / "journal").read_text()


@pytest.fixture
def service(tmp_path: Path, notifications: Notifications) -> Iterator[Service]:
    svc = Service(tmp_path, notifications)
    svc.store.mkdir()
    svc.mp.mkdir()
    yield svc
    if is_mounted(svc.mp):
        run("fusermount3", "-u", "-z", str(svc.mp))


def test_ready_once_live_then_execstop_uploads_and_unmounts(service: Service) -> None:
    env = service.env("")  # STOREFS_OPTIONS empty: -o ""
    mp = service.mp
    with service.started(env) as proc:
        service.notifications.wait("READY=1", 60, proc)
        # READY=1 means live: the mount is there and answers
        assert is_mounted(mp) and os.listdir(mp) == []
        (mp / "notes.txt").write_text("written before the stop\n")
        stop = run(*command(service.unit["ExecStop"], env), env=env)
        assert stop.returncode == 0, stop.stderr
        assert proc.wait(60) == 0, service.journal()
    assert not is_mounted(mp)
    assert (service.store / "notes.txt").read_text() == "written before the stop\n"
    # ExecStopPost on a clean stop: nothing left to detach, and its failure is ignored
    assert service.unit["ExecStopPost"].startswith("-")
    # the cache went where the unit says (CacheDirectory=), not to /var/cache
    assert any((service.tmp / "cache").iterdir())


def test_sigterm_sends_stopping_uploads_then_unmounts(service: Service) -> None:
    mp = service.mp
    with service.started(service.env("noatime")) as proc:
        service.notifications.wait("READY=1", 60, proc)
        assert is_mounted(mp)
        assert not service.notifications.seen("STOPPING=1")
        with open(mp / "open.txt", "w") as f:  # still open when the signal comes
            f.write("kept\n")
            f.flush()
            proc.send_signal(signal.SIGTERM)
            service.notifications.wait("STOPPING=1", 30, proc)
        assert proc.wait(60) == 0, service.journal()
    assert not is_mounted(mp)
    assert (service.store / "open.txt").read_text() == "kept\n"


def test_no_ready_when_the_mount_fails(service: Service) -> None:
    with service.started(service.env("bogus_option")) as proc:
        assert proc.wait(60) != 0
    assert service.journal().strip().splitlines() == [
        "storefs: unknown option 'bogus_option' for file: mounts"]
    service.notifications.sock.settimeout(0)
    with pytest.raises(BlockingIOError):
        service.notifications.sock.recv(4096)
