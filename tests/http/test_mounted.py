"""HTTP(S) trees through a real kernel mount (``storefs mount https://...`` as a user runs
it, through the harness of ``tests/mount/conftest.py``): everyday read-only tools see the
served directory as it is on the server's disk, and every write fails with EROFS."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storefs.backends.base import MiB
from tests.http.conftest import write_tree
from tests.mount._target import MountTarget
from tests.mount.conftest import Mounted, abort_fuse, is_mounted, storefs
from tests.servers.fixture_nginx import HttpServers

pytestmark = [
    pytest.mark.mount,
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]

T0 = 1_700_000_000

TREE: dict[str, bytes | None] = {
    "README.txt": b"top level\nneedle one\n",
    "empty.dat": b"",
    "one.byte": b"1",
    "page.bin": bytes(range(256)) * 4096 + b"+",  # 1 MiB + 1: a page boundary
    "docs/guide.md": b"# Guide\n\nA needle in the docs.\n",
    "docs/sp ace & amp (1).txt": b"spaces\n",
    "docs/ünïcödé.txt": "ünïcödé\n".encode(),
    "docs/deep/er/leaf.txt": b"leaf needle\n",
    "empty-dir/": None,
    "foo.txt": b"foo",
    "foo/bar.txt": b"bar",
}


def fill(root: Path, files: dict[str, bytes | None]) -> None:
    write_tree(root, files)
    # whole seconds, as HTTP dates carry them; deepest first, so no write moves one later
    for i, p in enumerate(sorted(root.rglob("*"), reverse=True)):
        os.utime(p, (T0 + i, T0 + i))


@pytest.fixture
def mount_tree(servers: HttpServers, tmp_path: Path, request: pytest.FixtureRequest
               ) -> Iterator[Callable[..., tuple[Mounted, Path]]]:
    """``mount_tree(files, server="https", under="", **options)``: a fresh directory of
    the www root filled with ``files``, mounted; unmounted with ``storefs umount`` after
    the test, which fails if that fails or the daemon logged a traceback."""
    made: list[Mounted] = []
    empty_config = tmp_path / "storefs.yaml"
    empty_config.write_text("")

    def mount(files: dict[str, bytes | None], server: str = "https", under: str = "",
              env: dict[str, str] | None = None, **options: str) -> tuple[Mounted, Path]:
        src, path = servers.fresh(under)
        fill(src, files)
        if server == "https":
            options.setdefault("ca_bundle", str(servers.ca))
        n = len(made)
        target = MountTarget(servers.urls[server] + path, dict(options),
                             env={"STOREFS_CONFIG": str(empty_config), **(env or {})})
        m = Mounted(target, f"{request.node.name}-{n}", tmp_path / f"mnt{n}",
                    tmp_path / f"cache{n}", tmp_path / f"storefs{n}.log")
        m.path.mkdir()
        made.append(m)
        m.mount()
        return m, src

    yield mount
    os.chdir("/")
    for m in made:
        try:
            if is_mounted(m.path):
                try:
                    m.umount()
                except BaseException:
                    abort_fuse(m.path)
                    raise
        finally:
            log = m.log_text()
            assert "Traceback" not in log, f"the daemon logged a traceback:\n{log[-4000:]}"
            assert servers.password not in log


def listing(root: Path) -> list[tuple[str, str, int, int]]:
    """(path, type, size, mtime) below ``root``; directories' sizes do not count."""
    out = []
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        kind = "d" if stat.S_ISDIR(st.st_mode) else "f"
        out.append((str(p.relative_to(root)), kind, 0 if kind == "d" else st.st_size,
                    int(st.st_mtime)))
    return out


def no_dir_times(rows: list[tuple[str, str, int, int]]) -> list[tuple[str, str, int, int]]:
    return [(p, kind, size, mtime if kind == "f" else 0) for p, kind, size, mtime in rows]


def test_everyday_tools_on_an_https_tree(mount_tree: Callable[..., tuple[Mounted, Path]],
                                         tmp_path: Path) -> None:
    big = os.urandom(64 * MiB)
    m, src = mount_tree({**TREE, "big.bin": big})
    # the tree with its sizes and mtimes, as find and stat see it
    assert listing(m.path) == listing(src)
    # ls -l: sizes and mtimes of files (fields 5 and 6; the name may hold spaces)
    shown = {" ".join(f[6:]): (int(f[4]), int(f[5])) for f in
             (line.split() for line in m.sh("ls -ln --time-style=+%s docs").stdout
              .splitlines()[1:]) if f[0].startswith("-")}
    assert shown == {p.name: (p.stat().st_size, int(p.stat().st_mtime))
                     for p in (src / "docs").iterdir() if p.is_file()}
    found = m.sh("find . | sort").stdout
    assert found == "\n".join(sorted(["."] + [f"./{p.relative_to(src)}"
                                              for p in src.rglob("*")])) + "\n"
    # cp -a out, diff -r against the server's directory; tar; grep -r
    m.sh(f"cp -a $M {tmp_path}/copy && diff -r {src} {tmp_path}/copy")
    m.sh(f"mkdir {tmp_path}/untar && tar cf - -C $M . | tar xf - -C {tmp_path}/untar "
         f"&& diff -r {src} {tmp_path}/untar")
    assert m.sh("grep -rl needle . | sort").stdout == \
        "./README.txt\n./docs/deep/er/leaf.txt\n./docs/guide.md\n"
    # the 64 MiB file reads back whole
    md5 = m.sh("md5sum big.bin").stdout.split()[0]
    assert md5 == hashlib.md5(big).hexdigest()
    assert (m.path / "page.bin").read_bytes() == TREE["page.bin"]


def test_writes_fail_with_erofs(mount_tree: Callable[..., tuple[Mounted, Path]]) -> None:
    m, src = mount_tree(TREE)
    mp = m.path
    attempts: dict[str, Callable[[], object]] = {
        "create": lambda: open(mp / "new.txt", "w"),  # noqa: SIM115
        "append": lambda: open(mp / "README.txt", "a"),  # noqa: SIM115
        "truncate": lambda: os.truncate(mp / "README.txt", 0),
        "mkdir": lambda: os.mkdir(mp / "newdir"),
        "unlink": lambda: os.unlink(mp / "README.txt"),
        "rmdir": lambda: os.rmdir(mp / "empty-dir"),
        "rename": lambda: os.rename(mp / "foo.txt", mp / "bar.txt"),
        "chmod": lambda: os.chmod(mp / "foo.txt", 0o600),
        "utime": lambda: os.utime(mp / "foo.txt", (1, 1)),
        "symlink": lambda: os.symlink("foo.txt", mp / "link"),
        "setxattr": lambda: os.setxattr(mp / "foo.txt", "user.x", b"1"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(OSError) as exc:
            attempt()
        assert exc.value.errno == errno.EROFS, what
    out = m.sh("touch $M/x.txt", check=False)
    assert out.returncode != 0 and "Read-only file system" in out.stderr
    # nothing changed on the server, and reading still works
    assert listing(m.path) == listing(src)
    assert (mp / "README.txt").read_bytes() == TREE["README.txt"]


def test_html_index_of_python_http_server(mount_tree: Callable[..., tuple[Mounted, Path]],
                                          tmp_path: Path) -> None:
    m, src = mount_tree(TREE, server="py")
    # an HTML index says nothing of directories' mtimes (see docs/backends/http.md)
    assert no_dir_times(listing(m.path)) == no_dir_times(listing(src))
    m.sh(f"cp -r $M {tmp_path}/copy && diff -r {src} {tmp_path}/copy")


def test_basic_auth_from_the_config_file(mount_tree: Callable[..., tuple[Mounted, Path]],
                                         servers: HttpServers, tmp_path: Path) -> None:
    config = tmp_path / "http.yaml"
    config.write_text(f"http:\n  username: {servers.user}\n  password: {servers.password}\n")
    config.chmod(0o600)
    m, _ = mount_tree({"private.txt": b"for jill only\n"}, under="_auth",
                        env={"STOREFS_CONFIG": str(config)})
    assert (m.path / "private.txt").read_bytes() == b"for jill only\n"
    status = storefs("status", env={"STOREFS_CONFIG": str(config)}).stdout
    assert servers.password not in status


def test_mount_errors_are_one_line(servers: HttpServers, tmp_path: Path) -> None:
    mp = tmp_path / "mnt"
    mp.mkdir()
    _, path = servers.fresh()
    cases = {
        servers.urls["https"] + path + "missing/": (
            ["-o", f"ca_bundle={servers.ca}"], "does not exist (404 Not Found)"),
        servers.urls["https"] + path: ([], "is refused (self-signed certificate)"),
        servers.urls["http"] + "/_auth" + path: ([], "wants credentials (401)"),
    }
    for url, (extra, expected) in cases.items():
        out = storefs("mount", url, str(mp), "--cache-dir", str(tmp_path / "cache"), *extra)
        assert out.returncode != 0
        assert out.stderr.startswith("storefs: http: ") and expected in out.stderr
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
        assert not is_mounted(mp)
