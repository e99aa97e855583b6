"""``mount.storefs``: the helper mount(8) runs for file systems of type ``storefs``.

mount(8) runs ``/sbin/mount.TYPE SOURCE DIR [-sfnv] [-N NS] [-o OPTS] [-t TYPE]`` for
``mount -t storefs SOURCE DIR -o OPTS``, for ``mount DIR`` and ``mount -a`` with fstab lines
of type ``storefs`` (and, as ``mount.fuse.storefs``, of type ``fuse.storefs``), and systemd
does the same for ``.mount`` units.  This module turns that into ``storefs mount`` (which
daemonises and returns only once the mount is live), after

* dropping what mount(8) and systemd own: ``defaults auto noauto nofail _netdev user users
  owner group nouser comment= x-*`` (``x-systemd.automount``...), and mount's ``-s -f -n -v``
  flags (``-f``, a fake mount, checks everything and mounts nothing; ``-s`` drops unknown
  options instead of refusing them; ``-v`` shows the command run);
* passing ``ro``/``rw``, the kernel's flags (``allow_other``, ``noatime``...), storefs' own
  options (``uid=``, ``gid=``, ``umask=``, ``cache_dir=``... with user and group *names*
  accepted for ``uid``/``gid``) and the backend's options on to ``storefs mount -o``, which
  refuses any other option with one line and exit status 1 before anything is mounted;
* its own options: ``setuid=USER`` runs the daemon as USER (supplementary groups, gid, uid
  and HOME/USER/LOGNAME set as a login would, root's XDG directories and ssh-agent
  dropped), ``credfile=PATH`` reads ``NAME=VALUE`` lines (the format of systemd's
  ``EnvironmentFile=``; ``export`` allowed) into the daemon's *environment*, never its
  argv, so secrets stay out of ``ps``; the file must belong to root or to the daemon's
  user and be readable by nobody else.  ``log_file=PATH`` is ``storefs mount --log-file``.
  Options holding secrets (``secret_key=``, ``password=``...) are refused here: fstab, the
  mount table and the process list are readable by every user.

Run as ``umount.storefs`` or ``umount.fuse.storefs`` (the helpers umount(8) runs, and so
systemd when it stops a ``.mount`` unit), it is ``storefs umount DIR`` run as the user the
daemon runs as: pending uploads reach the store before the file system goes away.
"""

from __future__ import annotations

import difflib
import errno
import grp
import os
import pwd
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from storefs.errors import StorefsError
from storefs.source import Source, parse_source

PROG = "mount.storefs"

#: options that belong to mount(8) / fstab / systemd, given without a value
MOUNT_FLAGS = frozenset({"defaults", "auto", "noauto", "nofail", "_netdev", "user", "nouser",
                         "users", "owner", "group"})
#: the helper's own options (with a value)
HELPER_OPTIONS = frozenset({"setuid", "credfile", "log_file"})
#: the daemon's environment from root's that must not follow it to another user
PER_USER_ENV = ("XDG_RUNTIME_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
                "XDG_STATE_HOME", "SSH_AUTH_SOCK", "MAIL", "STOREFS_CONFIG")
#: exit status for a wrong invocation or option (mount(8)'s convention)
USAGE = 1

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class HelperError(StorefsError):
    """A one-line reason to refuse the mount."""


@dataclass
class Invocation:
    """What mount(8) asked for."""

    source: str
    mountpoint: str
    options: list[str] = field(default_factory=list)
    fake: bool = False
    sloppy: bool = False
    verbose: bool = False


@dataclass
class Plan:
    """What the helper will run."""

    source: str
    mountpoint: str
    options: list[str]
    user: pwd.struct_passwd | None = None
    credfile: Path | None = None
    log_file: str | None = None
    dropped: list[str] = field(default_factory=list)


# -- the command line mount(8) gives -------------------------------------------------------

def split_mount_options(text: str) -> list[str]:
    """mount(8)'s option string: commas separate, double quotes protect commas in a value
    (``opt="a,b"``, as libmount writes them)."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            if cur:
                out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if quoted:
        raise HelperError(f"unbalanced double quote in options {text!r}")
    if cur:
        out.append("".join(cur))
    return out


def parse_invocation(argv: list[str]) -> Invocation:
    """``SOURCE DIR [-sfnv] [-N NS] [-o OPTS] [-t TYPE]`` (flags may also come first)."""
    positional: list[str] = []
    inv = Invocation("", "")
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-o", "-t", "-N"):
            if i + 1 >= len(argv):
                raise HelperError(f"{arg} needs a value")
            value = argv[i + 1]
            if arg == "-o":
                inv.options += split_mount_options(value)
            elif arg == "-N":
                raise HelperError("mounting in another namespace (-N) is not supported")
            elif value not in ("storefs", "fuse.storefs"):
                raise HelperError(f"file system type {value!r} is not storefs")
            i += 2
            continue
        if arg.startswith("-o") and len(arg) > 2:
            inv.options += split_mount_options(arg[2:])
        elif arg.startswith("-") and len(arg) > 1 and set(arg[1:]) <= set("sfnvrw"):
            inv.sloppy |= "s" in arg
            inv.fake |= "f" in arg
            inv.verbose |= "v" in arg
            if "r" in arg:
                inv.options.append("ro")
            if "w" in arg:
                inv.options.append("rw")
        elif arg.startswith("-") and len(arg) > 1:
            raise HelperError(f"unknown flag {arg} (usage: {PROG} SOURCE DIR [-sfnv] "
                              "[-o OPTIONS])")
        else:
            positional.append(arg)
        i += 1
    if len(positional) != 2:
        raise HelperError(f"usage: {PROG} SOURCE DIR [-sfnv] [-o OPTIONS]")
    inv.source, inv.mountpoint = positional
    return inv


# -- options --------------------------------------------------------------------------------

def _numeric_id(name: str, value: str) -> str:
    """``uid=jill`` / ``gid=staff`` as numbers (what storefs' options take)."""
    if value.isdigit():
        return value
    try:
        return str(pwd.getpwnam(value).pw_uid if name == "uid" else grp.getgrnam(value).gr_gid)
    except KeyError:
        kind = "user" if name == "uid" else "group"
        raise HelperError(f"{name}={value}: no such {kind}") from None


def _user(value: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(value)) if value.isdigit() else pwd.getpwnam(value)
    except KeyError:
        raise HelperError(f"setuid={value}: no such user") from None


def plan_mount(inv: Invocation) -> Plan:
    """Sort mount(8)'s options into what storefs gets, what the helper does, what is dropped;
    refuses secret-bearing options.  The names and values of the rest are checked by
    ``storefs mount`` before it daemonises (one line each), or here for a fake (``-f``) or
    sloppy (``-s``) mount: that needs the backend's module, and importing an SDK twice
    would make every mount slower."""
    from storefs.config import is_secret

    source = parse_source(inv.source)
    plan = Plan(inv.source, inv.mountpoint, [])
    for item in inv.options:
        name, eq, value = item.partition("=")
        if (name in MOUNT_FLAGS and not eq) or name.startswith("x-") or name == "comment":
            plan.dropped.append(item)
        elif name in HELPER_OPTIONS:
            if not value:
                raise HelperError(f"option {name} needs a value: {name}=...")
            if name == "setuid":
                plan.user = _user(value)
            elif name == "credfile":
                plan.credfile = Path(value)
            else:
                plan.log_file = value
        elif is_secret(name):
            raise HelperError(
                f"option {name} holds a secret, and mount options are readable by every "
                f"user (fstab, /proc/mounts, ps): put it in a credentials file instead "
                f"(-o credfile=/etc/storefs/NAME.env, mode 0600)")
        elif name in ("uid", "gid") and eq:
            plan.options.append(f"{name}={_numeric_id(name, value)}")
        else:
            plan.options.append(item)
    if inv.sloppy or inv.fake:
        _check_options(plan, source, drop_unknown=inv.sloppy)
    return plan


def _check_options(plan: Plan, source: Source, *, drop_unknown: bool) -> None:
    """Refuse (or drop) the options ``storefs mount`` would refuse."""
    from storefs.backends import backend_options
    from storefs.options import KERNEL_FLAGS, KERNEL_VALUES, STOREFS_OPTIONS, parse_options

    known_backend = backend_options(source)
    kept: list[str] = []
    for item in plan.options:
        name, eq, _ = item.partition("=")
        if (name in ("ro", "rw") or name in STOREFS_OPTIONS or name in known_backend
                or (name in KERNEL_FLAGS and not eq) or (name in KERNEL_VALUES and eq)):
            kept.append(item)
        elif drop_unknown:
            plan.dropped.append(item)
        else:
            names = sorted({*STOREFS_OPTIONS, *known_backend, *KERNEL_FLAGS, *HELPER_OPTIONS})
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise HelperError(f"unknown option '{name}' for {source.scheme}: mounts{hint}")
    plan.options = kept
    parse_options(kept, known_backend, source.scheme)  # values: umask=abc, cache_size=lots


def storefs_command(plan: Plan, python: str = sys.executable) -> list[str]:
    """The ``storefs mount`` command line (``-I``: nothing from the current directory or
    PYTHON* variables gets into a process that may run as root)."""
    cmd = [python, "-I", "-m", "storefs", "mount", plan.source, plan.mountpoint]
    if plan.options:
        cmd += ["-o", ",".join(o.replace(",", "\\,") for o in plan.options)]
    if plan.log_file:
        cmd += ["--log-file", plan.log_file]
    return cmd


# -- credentials file ---------------------------------------------------------------------

def check_private(path: Path, st: os.stat_result, owners: tuple[int, ...]) -> None:
    """Refuse a credentials file that others could read or that a stranger could have
    written (like ssh does with keys)."""
    if not stat.S_ISREG(st.st_mode):
        raise HelperError(f"credentials file {path} is not a regular file")
    if st.st_uid not in owners:
        who = " or ".join(_user_name(u) for u in sorted(set(owners)))
        raise HelperError(f"credentials file {path} belongs to {_user_name(st.st_uid)}, "
                          f"not to {who}; run: chown {_user_name(owners[-1])} {path}")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise HelperError(f"credentials file {path} is readable or writable by others "
                          f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def parse_env_file(text: str, where: str) -> dict[str, str]:
    """``NAME=VALUE`` lines as systemd's ``EnvironmentFile=`` reads them: blank lines and
    lines starting with ``#`` or ``;`` are skipped, ``export`` may come first, a value may be
    in single quotes (taken literally) or double quotes (``\\"`` and ``\\\\`` escapes).
    Nothing is expanded, so a ``$`` outside single quotes is refused rather than taken
    literally by mistake.  Errors name the line, never its text (it may hold a secret)."""
    env: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[7:].lstrip()
        name, eq, value = line.partition("=")
        name = name.strip()
        if not eq or not _NAME.fullmatch(name):
            raise HelperError(f"{where} line {n}: expected NAME=VALUE (shell commands are "
                              "not run: write each value itself)")
        env[name] = _env_value(value.strip(), f"{where} line {n}")
    return env


def _env_value(value: str, where: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if value[:1] == "'":
        raise HelperError(f"{where}: unbalanced single quote")
    if value[:1] == '"':
        out: list[str] = []
        i = 1
        while i < len(value):
            ch = value[i]
            if ch == "\\" and i + 1 < len(value) and value[i + 1] in '"\\$`':
                out.append(value[i + 1])
                i += 2
                continue
            if ch == '"':
                if value[i + 1:].strip():
                    raise HelperError(f"{where}: text after the closing quote")
                return "".join(out)
            if ch in "$`":
                raise HelperError(f"{where}: variables and commands are not expanded; write "
                                  "the value itself (in single quotes if it holds a $)")
            out.append(ch)
            i += 1
        raise HelperError(f"{where}: unbalanced double quote")
    if "$" in value or "`" in value:
        raise HelperError(f"{where}: variables and commands are not expanded; write the "
                          "value itself (in single quotes if it holds a $)")
    return value


def read_credfile(path: Path, owners: tuple[int, ...]) -> dict[str, str]:
    """The variables of a credentials file, checked on the very file read (fstat of the
    open file: it cannot be swapped between the check and the read)."""
    try:
        with open(path, "rb") as f:
            check_private(path, os.fstat(f.fileno()), owners)
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise HelperError(f"credentials file {path}: {reason}") from None
    return parse_env_file(text, f"credentials file {path}")


# -- the daemon's user and environment ----------------------------------------------------

def user_environment(base: Mapping[str, str], user: pwd.struct_passwd) -> dict[str, str]:
    """``base`` as ``user`` should see it: identity variables set, the caller's per-user
    directories and agent sockets removed (``runuser -u`` does the same for HOME/USER)."""
    env = {k: v for k, v in base.items() if k not in PER_USER_ENV}
    env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    runtime = Path(f"/run/user/{user.pw_uid}")
    try:
        if runtime.is_dir() and runtime.stat().st_uid == user.pw_uid:
            env["XDG_RUNTIME_DIR"] = str(runtime)
    except OSError:
        pass
    return env


def drop_privileges(user: pwd.struct_passwd) -> None:
    """Become ``user`` for good: supplementary groups, gid, then uid (real, effective and
    saved), and check that root cannot be regained."""
    if os.geteuid() == user.pw_uid and os.getegid() == user.pw_gid and user.pw_uid != 0:
        return
    try:
        os.initgroups(user.pw_name, user.pw_gid)
        os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
        os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
    except OSError as exc:
        raise HelperError(f"cannot become user {user.pw_name}: {exc.strerror}") from None
    if user.pw_uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise HelperError(f"privileges were not dropped for user {user.pw_name}")


def daemon_environment(plan: Plan) -> dict[str, str]:
    env = dict(os.environ)
    uid = os.getuid()
    if plan.user is not None:
        if uid != 0 and plan.user.pw_uid != uid:
            raise HelperError(f"setuid={plan.user.pw_name}: only root can run the daemon as "
                              "another user")
        env = user_environment(env, plan.user)
        uid = plan.user.pw_uid
    if plan.credfile is not None:
        env.update(read_credfile(plan.credfile, (0, uid) if uid != 0 else (0,)))
    return env


def _exec(cmd: list[str], env: dict[str, str], user: pwd.struct_passwd | None) -> None:
    if user is not None:
        drop_privileges(user)
    os.chdir("/")
    try:
        os.execve(cmd[0], cmd, env)
    except OSError as exc:
        raise HelperError(f"cannot run {cmd[0]}: {exc.strerror}") from None


def check_not_dead(mountpoint: str) -> None:
    """A dead FUSE mount (its daemon was killed) is still in the way: say so in one line."""
    try:
        os.stat(mountpoint)
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise HelperError(
                f"{mountpoint}: Transport endpoint is not connected: the daemon of an "
                f"earlier mount there has died; run 'umount {mountpoint}' (pending uploads "
                "stay in the cache for the next mount), then mount again") from None


def mount_main(argv: list[str]) -> int:
    inv = parse_invocation(argv)
    check_not_dead(inv.mountpoint)
    plan = plan_mount(inv)
    env = daemon_environment(plan)
    cmd = storefs_command(plan)
    if inv.verbose:
        who = f" as {plan.user.pw_name}" if plan.user is not None else ""
        dropped = f" (dropped: {','.join(plan.dropped)})" if plan.dropped else ""
        print(f"{PROG}: running{who}: {' '.join(cmd)}{dropped}", file=sys.stderr)
    if inv.fake:
        return 0
    _exec(cmd, env, plan.user)
    return 0  # pragma: no cover - execve does not return


# -- umount ---------------------------------------------------------------------------------

def _unescape(text: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def mount_owner(mountpoint: str) -> int | None:
    """The ``user_id`` of the FUSE mount on ``mountpoint`` (from /proc/self/mountinfo)."""
    target = os.path.realpath(mountpoint)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    owner: int | None = None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or _unescape(fields[4]) != target:
            continue
        for opt in right.split()[-1].split(","):
            if opt.startswith("user_id="):
                owner = int(opt[8:])  # the last mount on top wins
    return owner


def umount_main(argv: list[str]) -> int:
    """``umount.storefs DIR [-nlfvr] [-N NS] [-t TYPE]``: ``storefs umount DIR`` as the
    daemon's user (``-l``: ``--lazy``; ``-f``: abort the connection, uploads stay pending)."""
    dirs: list[str] = []
    flags = ""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-N":
            raise HelperError("unmounting in another namespace (-N) is not supported")
        if arg == "-t":
            i += 2
            continue
        if arg.startswith("-") and len(arg) > 1:
            flags += arg[1:]
        else:
            dirs.append(arg)
        i += 1
    if len(dirs) != 1:
        raise HelperError("usage: umount.storefs DIR [-nlfv]")
    mountpoint = dirs[0]
    if "f" in flags:
        _exec(["/bin/umount", "-i", "-f", mountpoint], dict(os.environ), None)
    cmd = [sys.executable, "-I", "-m", "storefs", "umount", mountpoint]
    if "l" in flags:
        cmd.append("--lazy")
    env = dict(os.environ)
    user = None
    owner = mount_owner(mountpoint)
    if owner is not None and owner != os.getuid() and os.getuid() == 0:
        try:
            user = pwd.getpwuid(owner)
        except KeyError:
            user = None
        else:
            env = user_environment(env, user)
    _exec(cmd, env, user)
    return 0  # pragma: no cover - execve does not return


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    umount = os.path.basename(sys.argv[0]).startswith("umount.")
    name = "umount.storefs" if umount else PROG
    try:
        return umount_main(args) if umount else mount_main(args)
    except StorefsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
