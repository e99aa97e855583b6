"""Everyday Unix tools on a real kernel mount, once per target (mem, file, and every
backend that adds a ``tests/mount/target_*.py``)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.mount.conftest import Mounted
from tests.mount.treeutil import MiB, describe, diff, make_tree, pattern


def test_cp_a_tree_in_and_out(mounted: Mounted, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    mounted.sh(f"cp -a {src} $M/tree")
    assert diff(describe(src), describe(mounted.path / "tree")) == []
    mounted.sh(f"diff -r --no-dereference {src} $M/tree")
    out = tmp_path / "out"
    mounted.sh(f"cp -a $M/tree {out}")
    assert diff(describe(src), describe(out)) == []


def test_mv_files_and_directories(mounted: Mounted, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    mounted.sh(f"cp -a {src} $M/a")
    before = describe(mounted.path / "a")
    mounted.sh("""
        mv $M/a/text.txt $M/a/renamed.txt
        mv $M/a/renamed.txt $M/a/sub/moved.txt
        mkdir $M/b
        mv $M/a/sub $M/b/sub2
        mkdir $M/empty-target
        mv $M/b $M/empty-target-new && mv $M/empty-target-new/sub2 $M/empty-target/x
    """)
    assert not (mounted.path / "a" / "text.txt").exists()
    assert not (mounted.path / "a" / "sub").exists()
    moved = mounted.path / "empty-target" / "x"
    assert (moved / "moved.txt").read_bytes() == (src / "text.txt").read_bytes()
    assert (moved / "deeper" / "deepest" / "leaf.dat").read_bytes() == \
        (src / "sub" / "deeper" / "deepest" / "leaf.dat").read_bytes()
    after = describe(moved)
    assert after["four-k.bin"] == before["sub/four-k.bin"]
    assert after["empty-inner"][0] == "dir"
    # a directory renamed over an empty one replaces it; over a non-empty one it fails
    mounted.sh("mkdir -p $M/d1/x $M/d2 && touch $M/d1/x/f && mv -T $M/d1 $M/d2")
    assert (mounted.path / "d2" / "x" / "f").exists()
    proc = mounted.sh("mkdir -p $M/d3/y && touch $M/d3/y/g && mv -T $M/d3 $M/d2", check=False)
    assert proc.returncode != 0 and "not empty" in proc.stderr.lower()


def test_rename_over_existing_file_and_noreplace(mounted: Mounted) -> None:
    (mounted.path / "old").write_text("old")
    (mounted.path / "new").write_text("new")
    proc = mounted.sh("mv --no-clobber $M/new $M/old; cat $M/old", check=False)
    assert proc.stdout.strip() == "old"
    os.rename(mounted.path / "new", mounted.path / "old")
    assert (mounted.path / "old").read_text() == "new"
    assert sorted(os.listdir(mounted.path)) == ["old"]


def test_rm_r(mounted: Mounted, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    mounted.sh(f"cp -a {src} $M/t && rm -r $M/t")
    assert os.listdir(mounted.path) == []
    proc = mounted.sh("ls $M/t", check=False)
    assert proc.returncode != 0


def test_mkdir_p_rmdir_and_empty_directories(mounted: Mounted) -> None:
    mounted.sh("mkdir -p $M/a/b/c $M/a/e")
    assert sorted(os.listdir(mounted.path / "a")) == ["b", "e"]
    with pytest.raises(OSError) as exc:
        os.rmdir(mounted.path / "a" / "b")
    assert exc.value.errno == errno.ENOTEMPTY
    with pytest.raises(FileExistsError):
        os.mkdir(mounted.path / "a" / "e")
    os.rmdir(mounted.path / "a" / "e")
    assert os.listdir(mounted.path / "a") == ["b"]
    # removing the only file of a directory leaves the directory in place
    (mounted.path / "a" / "b" / "c" / "f").write_text("x")
    os.unlink(mounted.path / "a" / "b" / "c" / "f")
    assert os.listdir(mounted.path / "a" / "b" / "c") == []
    if "persistence" not in mounted.target.lacks:
        mounted.remount()
        assert (mounted.path / "a" / "b" / "c").is_dir()
        assert os.listdir(mounted.path / "a" / "b" / "c") == []
        assert not (mounted.path / "a" / "e").exists()


def test_append(mounted: Mounted) -> None:
    p = mounted.path / "log.txt"
    expected = b""
    for i in range(20):
        line = f"line {i}\n".encode()
        with open(p, "ab") as f:
            f.write(line)
        expected += line
        assert p.read_bytes() == expected
    mounted.sh("echo tail >> $M/log.txt")
    assert p.read_bytes() == expected + b"tail\n"
    # append to a bigger file (several pages, above the multipart threshold)
    big = mounted.path / "big.bin"
    body = pattern(9 * MiB + 5, 7)
    big.write_bytes(body)
    with open(big, "ab") as f:
        f.write(b"appended")
    assert hashlib.sha256(big.read_bytes()).digest() == \
        hashlib.sha256(body + b"appended").digest()


def test_truncate_down_up_and_to_zero(mounted: Mounted) -> None:
    p = mounted.path / "t.bin"
    body = pattern(300_000, 9)
    p.write_bytes(body)
    os.truncate(p, 1000)
    assert p.read_bytes() == body[:1000]
    os.truncate(p, 5000)  # extending shows zeros, never the old bytes
    assert p.read_bytes() == body[:1000] + bytes(4000)
    mounted.sh("truncate -s 0 $M/t.bin")
    assert p.stat().st_size == 0 and p.read_bytes() == b""
    with open(p, "r+b") as f:
        f.write(b"abc")
        f.truncate(2)
    assert p.read_bytes() == b"ab"


def test_dd_with_seek_edits_in_place(mounted: Mounted, tmp_path: Path) -> None:
    body = pattern(3 * MiB, 11)
    (mounted.path / "disk.img").write_bytes(body)
    patch = pattern(8192, 12)
    (tmp_path / "patch").write_bytes(patch)
    mounted.sh(f"dd if={tmp_path}/patch of=$M/disk.img bs=4096 seek=100 conv=notrunc status=none")
    mounted.sh(f"dd if={tmp_path}/patch of=$M/disk.img bs=1 seek={3 * MiB + 10} "
               "count=100 conv=notrunc status=none")
    expected = bytearray(body)
    expected[409600:409600 + 8192] = patch
    expected += bytes(10) + patch[:100]
    assert (mounted.path / "disk.img").read_bytes() == bytes(expected)


def test_tar_create_and_extract(mounted: Mounted, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    mounted.sh(f"tar --format=posix -C {src} -cf $M/archive.tar . && mkdir $M/x && "
               "tar -C $M/x -xpf $M/archive.tar")
    assert diff(describe(src), describe(mounted.path / "x")) == []
    mounted.sh(f"mkdir {tmp_path}/back && "
               f"tar --format=posix -C $M/x -cf - . | tar -C {tmp_path}/back -xpf -")
    assert diff(describe(src), describe(tmp_path / "back")) == []


def test_rsync_twice_transfers_nothing_the_second_time(mounted: Mounted, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    first = mounted.sh(f"rsync -a --stats {src}/ $M/dst/").stdout
    assert "Number of regular files transferred: 7" in first
    second = mounted.sh(f"rsync -a --stats --itemize-changes {src}/ $M/dst/").stdout
    assert "Number of regular files transferred: 0" in second, second
    itemized = [ln for ln in second.splitlines() if ln[:2] in (">f", "cd", "cL", ".d", ".f")]
    assert itemized == [], itemized
    assert diff(describe(src), describe(mounted.path / "dst")) == []


def test_git_init_commit_and_clone(mounted: Mounted, tmp_path: Path) -> None:
    git = "git -c user.email=t@example.com -c user.name=Tester -c init.defaultBranch=main"
    mounted.sh(f"""
        {git} init -q repo && cd repo
        for i in $(seq 1 20); do echo "content $i" > file$i.txt; done
        mkdir sub && echo nested > sub/n.txt
        {git} add . && {git} commit -qm first
        echo changed >> file1.txt && {git} commit -qam second
        {git} gc -q
        {git} fsck --full
    """)
    mounted.sh(f"{git} clone -q $M/repo {tmp_path}/clone && cd {tmp_path}/clone && "
               f"test \"$({git} log --oneline | wc -l)\" = 2")
    assert (tmp_path / "clone" / "file1.txt").read_text() == "content 1\nchanged\n"
    # and a clone into the mount
    mounted.sh(f"{git} clone -q {tmp_path}/clone $M/clone2 && cd $M/clone2 && {git} status --short "
               "&& test -z \"$({git} status --porcelain)\"")


def test_sqlite_inserts(mounted: Mounted) -> None:
    script = textwrap.dedent(f"""
        import sqlite3
        db = sqlite3.connect({str(mounted.path / "app.db")!r})
        db.execute("create table t (id integer primary key, name text)")
        for batch in range(10):
            with db:
                db.executemany("insert into t (name) values (?)",
                               [(f"row {{batch}}-{{i}}",) for i in range(100)])
        assert db.execute("select count(*) from t").fetchone()[0] == 1000
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
        db.close()
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    out = mounted.sh("sqlite3 $M/app.db 'select count(*) from t; pragma integrity_check;'")
    assert out.stdout.split() == ["1000", "ok"]


def test_editor_style_save(mounted: Mounted) -> None:
    target = mounted.path / "doc.txt"
    target.write_text("version 1\n")
    os.chmod(target, 0o640)
    # what vim and most editors do: write a temp file, fsync it, rename it over
    tmp = mounted.path / ".doc.txt.swp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.write(fd, b"version 2\n")
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, target)
    assert target.read_text() == "version 2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(os.listdir(mounted.path)) == ["doc.txt"]
    vim = shutil.which("vim") or shutil.which("vim.tiny") or shutil.which("vi")
    if vim:
        mounted.sh(f"{vim} -u NONE -i NONE -N -n -es +'%s/version 2/version 3/' +wq $M/doc.txt "
                   "</dev/null")
        assert target.read_text() == "version 3\n"


def test_chmod_chown_touch_survive_remount(mounted: Mounted) -> None:
    mounted.needs("persistence")
    mounted.sh("""
        echo data > $M/f && mkdir $M/d && ln -s f $M/l
        chmod 0751 $M/f && chmod 0700 $M/d
        chown 1234:5678 $M/f && chown 4321:8765 $M/d
        touch -d '2001-02-03 04:05:06.123456789 UTC' $M/f
        touch -d '1999-12-31 23:59:59.5 UTC' $M/d
        touch -h -d '2002-02-02 02:02:02 UTC' $M/l
    """)
    before = {n: os.lstat(mounted.path / n) for n in ("f", "d", "l")}
    mounted.remount()
    after = {n: os.lstat(mounted.path / n) for n in ("f", "d", "l")}
    for n in ("f", "d", "l"):
        b, a = before[n], after[n]
        assert (a.st_mode, a.st_uid, a.st_gid, a.st_mtime_ns) == \
            (b.st_mode, b.st_uid, b.st_gid, b.st_mtime_ns), n
    assert stat.S_IMODE(after["f"].st_mode) == 0o751
    assert (after["f"].st_uid, after["f"].st_gid) == (1234, 5678)
    assert after["f"].st_mtime_ns == 981173106_123456789
    assert (after["d"].st_uid, after["d"].st_gid, stat.S_IMODE(after["d"].st_mode)) == \
        (4321, 8765, 0o700)
    assert after["d"].st_mtime_ns == 946684799_500000000
    assert after["l"].st_mtime_ns == 1012615322_000000000
    assert (mounted.path / "f").read_text() == "data\n"


def test_symlinks(mounted: Mounted) -> None:
    mounted.sh("""
        mkdir $M/dir && echo target > $M/dir/file
        ln -s dir/file $M/rel
        ln -s $M/dir $M/abs-dir
        ln -s does/not/exist $M/dangling
    """)
    assert os.readlink(mounted.path / "rel") == "dir/file"
    assert (mounted.path / "rel").read_text() == "target\n"
    assert os.listdir(mounted.path / "abs-dir") == ["file"]
    assert os.readlink(mounted.path / "dangling") == "does/not/exist"
    assert not (mounted.path / "dangling").exists()
    st = os.lstat(mounted.path / "rel")
    assert stat.S_ISLNK(st.st_mode) and st.st_size == len("dir/file")
    if "persistence" not in mounted.target.lacks:
        mounted.remount()
        assert os.readlink(mounted.path / "rel") == "dir/file"
        assert (mounted.path / "rel").read_text() == "target\n"
        assert stat.S_ISLNK(os.lstat(mounted.path / "dangling").st_mode)


def test_xattrs(mounted: Mounted) -> None:
    p = mounted.path / "x.txt"
    p.write_text("x")
    os.setxattr(p, "user.color", b"blue")
    os.setxattr(p, "user.Binary.Name", bytes(range(0, 256, 4)))
    os.setxattr(p, "user.empty", b"")
    assert os.getxattr(p, "user.color") == b"blue"
    assert os.getxattr(p, "user.Binary.Name") == bytes(range(0, 256, 4))
    assert os.getxattr(p, "user.empty") == b""
    names = set(os.listxattr(p))
    assert {"user.color", "user.Binary.Name", "user.empty"} <= names
    os.removexattr(p, "user.empty")
    with pytest.raises(OSError) as exc:
        os.getxattr(p, "user.empty")
    assert exc.value.errno == errno.ENODATA
    with pytest.raises(OSError) as exc:
        os.getxattr(p, "user.never-set")
    assert exc.value.errno == errno.ENODATA
    os.mkdir(mounted.path / "d")
    os.setxattr(mounted.path / "d", "user.dirattr", b"yes")
    out = mounted.sh("getfattr -d --absolute-names $M/x.txt").stdout
    assert 'user.color="blue"' in out
    if "persistence" not in mounted.target.lacks:
        mounted.remount()
        assert os.getxattr(p, "user.color") == b"blue"
        assert os.getxattr(p, "user.Binary.Name") == bytes(range(0, 256, 4))
        assert os.getxattr(mounted.path / "d", "user.dirattr") == b"yes"
        assert "user.empty" not in os.listxattr(p)
    assert p.read_text() == "x"


def test_find_du_grep(mounted: Mounted, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    mounted.sh(f"cp -a {src} $M/t")
    found = set(mounted.sh("cd $M/t && find . -type f | sort").stdout.split("\n")) - {""}
    expected = {f"./{p.relative_to(src)}" for p in src.rglob("*")
                if p.is_file() and not p.is_symlink()}
    assert found == expected
    names = mounted.sh("find $M/t -name '*.bin' -newer $M/t/text.txt -printf '%f\\n' | sort")
    assert names.stdout.split() == ["four-k.bin", "page+1.bin"]
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file() and not p.is_symlink())
    du = mounted.sh("du -s --apparent-size --block-size=1 $M/t/sub").stdout.split()[0]
    sub_total = sum(p.stat().st_size for p in (src / "sub").rglob("*")
                    if p.is_file() and not p.is_symlink())
    assert int(du) == sub_total
    assert total > sub_total
    hits = mounted.sh("grep -rl 'hello storefs' $M/t | sort").stdout.split()
    assert hits == [f"{mounted.path}/t/text.txt"]


def test_open_unlinked_file_stays_usable(mounted: Mounted) -> None:
    p = mounted.path / "scratch"
    with open(p, "w+b") as f:
        f.write(b"before unlink ")
        f.flush()
        os.unlink(p)
        assert not p.exists()
        f.write(b"after unlink")
        f.seek(0)
        assert f.read() == b"before unlink after unlink"
    assert os.listdir(mounted.path) == []
    # a file already in the store, open for reading while it is removed / replaced
    body = pattern(3 * MiB, 21)
    (mounted.path / "kept").write_bytes(body)
    (mounted.path / "other").write_bytes(b"replacement")
    with open(mounted.path / "kept", "rb") as f:
        head = f.read(1000)
        os.rename(mounted.path / "other", mounted.path / "kept")
        rest = f.read()
    assert head + rest == body
    assert (mounted.path / "kept").read_bytes() == b"replacement"
    with open(mounted.path / "kept", "rb") as f:
        os.unlink(mounted.path / "kept")
        assert f.read() == b"replacement"


def test_exclusive_create_and_hard_links(mounted: Mounted) -> None:
    p = mounted.path / "lock"
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.close(fd)
    with pytest.raises(FileExistsError):
        os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with pytest.raises(OSError) as exc:
        os.link(p, mounted.path / "hard")
    assert exc.value.errno == errno.EPERM  # documented in docs/SEMANTICS.md


def test_large_file_round_trip(mounted: Mounted, tmp_path: Path) -> None:
    body = pattern(21 * MiB + 123, 31)
    (tmp_path / "big").write_bytes(body)
    mounted.sh(f"cp {tmp_path}/big $M/big")
    assert (mounted.path / "big").stat().st_size == len(body)
    got = hashlib.md5((mounted.path / "big").read_bytes()).hexdigest()
    assert got == hashlib.md5(body).hexdigest()
    if "persistence" not in mounted.target.lacks:
        mounted.remount()
        got = hashlib.md5((mounted.path / "big").read_bytes()).hexdigest()
        assert got == hashlib.md5(body).hexdigest()


def test_readdir_pages_are_complete_and_stable(mounted: Mounted) -> None:
    d = mounted.path / "many"
    d.mkdir()
    names = [f"entry-{i:04d}-{'x' * (i % 40)}" for i in range(400)]
    for n in names:
        (d / n).write_bytes(b"")
    for sub in ("s1", "s2"):
        (d / sub).mkdir()
    listed = os.listdir(d)
    assert sorted(listed) == sorted([*names, "s1", "s2"])
    assert len(listed) == len(set(listed))
    out = mounted.sh("ls -la $M/many | wc -l").stdout.strip()
    assert int(out) >= 402


def test_statfs(mounted: Mounted) -> None:
    st = os.statvfs(mounted.path)
    assert st.f_namemax == 255
    assert st.f_blocks > 0 and st.f_bavail > 0
    mounted.sh("df $M >/dev/null")
