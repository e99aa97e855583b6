"""Sample trees and tree comparison for the mounted-tool tests."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

MiB = 1024 * 1024


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def make_tree(root: Path, *, big: int = 0) -> Path:
    """A tree with the shapes that break mounts: empty files and dirs, odd names, deep
    paths, symlinks (relative, absolute, dangling, to a dir), modes and old mtimes."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "empty": b"",
        "one": b"x",
        "text.txt": b"hello storefs\n" * 100,
        "sub/four-k.bin": pattern(4096, 1),
        "sub/deeper/deepest/leaf.dat": pattern(100_001, 2),
        "with space/and ünïcødé 名前.txt": "ünïcødé\n".encode(),
        "sub/page+1.bin": pattern(MiB + 1, 3),
    }
    if big:
        files["big/big.bin"] = pattern(big, 4)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "empty-dir").mkdir()
    (root / "sub" / "empty-inner").mkdir()
    os.symlink("text.txt", root / "link-rel")
    os.symlink("/etc/hostname", root / "link-abs")
    os.symlink("no/such/target", root / "link-dangling")
    os.symlink("sub/deeper", root / "link-dir")
    os.chmod(root / "one", 0o600)
    os.chmod(root / "text.txt", 0o755)
    os.chmod(root / "sub" / "four-k.bin", 0o640)
    os.chmod(root / "empty-dir", 0o700)
    old = 1_000_000_000_123_456_789  # 2001-09-09, with nanoseconds
    for i, rel in enumerate(["one", "text.txt", "sub/four-k.bin", "empty"]):
        os.utime(root / rel, ns=(old + i, old + i * 1_000_000_007))
    for i, link in enumerate(["link-rel", "link-abs", "link-dangling", "link-dir"]):
        os.utime(root / link, ns=(old, old + 5 + i), follow_symlinks=False)
    for d in sorted((p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()),
                    key=lambda p: -len(p.parts)):
        os.utime(d, ns=(old, old + 77))
    return root


def describe(root: Path, *, times: bool = True) -> dict[str, tuple[object, ...]]:
    """Everything a user would compare between two trees: type, permissions, size,
    mtime (ns), symlink target, content hash."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            mtime = st.st_mtime_ns if times else 0
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p), mtime)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), mtime)
            else:
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, mtime, digest)
    return out


def diff(a: dict[str, tuple[object, ...]], b: dict[str, tuple[object, ...]]) -> list[str]:
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            lines.append(f"{key}: {a.get(key)} != {b.get(key)}")
    return lines
