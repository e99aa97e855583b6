"""The write-back journal: a dirty file rebuilt after a crash is exactly what was
acknowledged."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import trio

from storefs.cache.dirty import DirtyFile, Expect


def test_recovery_replays_writes_and_truncates(tmp_path: Path) -> None:
    df = DirtyFile.create(tmp_path, "a/b.bin", 0, base=None, base_etag=None,
                          expect=Expect(absent=True), metadata={"mode": "33188"},
                          content_type="text/plain")
    df.write(0, b"hello world")
    df.write(100, b"tail")
    df.truncate(102)
    df.write(5, b"_")
    df.set_metadata({"mode": "33261"})
    df.write(200, b"after the state was saved")
    expected = trio.run(df.read, 0, df.size)
    # the process dies here: file descriptors closed, nothing else written
    os.close(df.fd)
    again = DirtyFile.recover(df.dir)
    assert again.key == "a/b.bin" and again.size == df.size
    assert again.metadata == {"mode": "33261"} and again.expect == Expect(absent=True)
    assert trio.run(again.read, 0, again.size) == expected
    assert expected[:11] == b"hello_world" and expected[100:102] == b"ta"
    assert not again.clean


def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    df = DirtyFile.create(tmp_path, "k", 0, base=None, base_etag=None, expect=Expect(),
                          metadata={}, content_type=None)
    df.write(0, b"acknowledged")
    log = next(p for p in df.dir.iterdir() if p.name.startswith("log."))
    with open(log, "ab") as f:
        f.write(b"\x01\x00\x00")  # a record cut short by the crash: never acknowledged
    again = DirtyFile.recover(df.dir)
    assert trio.run(again.read, 0, 100) == b"acknowledged"


def test_uploaded_and_unchanged_files_are_not_uploaded_again(tmp_path: Path) -> None:
    from storefs.cache.fetch import LocalVersion

    df = DirtyFile.create(tmp_path, "k", 0, base=None, base_etag=None, expect=Expect(),
                          metadata={}, content_type=None)
    df.write(0, b"x")
    (tmp_path / "uploaded").write_bytes(b"x")
    df.uploaded(df.generation, LocalVersion(str(tmp_path / "uploaded"), 1), "etag1")  # type: ignore[arg-type]
    assert df.clean
    assert DirtyFile.recover(df.dir).clean


def test_discard_leaves_nothing_behind(tmp_path: Path) -> None:
    # every file a close uploads is discarded: a leftover would pile up in the cache and
    # come back as a pending upload after the next crash
    spares: list[str] = []
    for saves in (0, 3):
        df = DirtyFile.create(tmp_path, f"k{saves}", 0, base=None, base_etag=None,
                              expect=Expect(), metadata={}, content_type=None,
                              spares=spares)
        df.write(0, b"x")
        for i in range(saves):
            df.set_metadata({"mode": str(i)})  # each save starts a new log
        df.discard()
    # what stays is a directory of empty files, kept for the next file (not a pending
    # upload, nor anything recovery could take for one)
    left = list(tmp_path.iterdir())
    assert len(left) == 1 and left[0].name.startswith("free-")
    assert {p.name: p.stat().st_size for p in left[0].iterdir()} == {
        "data": 0, "log.1": 0, "state.json": 0}
    assert spares == [str(left[0])]
    # a torn save's temporary file (a crash mid-save, then recovery) goes too
    df = DirtyFile.create(tmp_path, "torn", 0, base=None, base_etag=None, expect=Expect(),
                          metadata={}, content_type=None, spares=spares)
    (df.dir / "state.json.tmp").write_text("{")
    df.discard()
    assert list(tmp_path.iterdir()) == []


def test_the_next_file_reuses_a_discarded_journals_files_and_never_its_contents(
        tmp_path: Path) -> None:
    # a new file costs ext4 an inode, three per small file's journal (0.3-0.8 ms each on
    # the CI disk): the next file reopens the kept ones, emptied
    spares: list[str] = []
    first = DirtyFile.create(tmp_path, "first", 0, base=None, base_etag=None,
                             expect=Expect(), metadata={"mode": "33188"}, content_type=None,
                             spares=spares)
    first.write(0, b"uploaded already" * 100)
    first.set_metadata({"mode": "33261"})  # log.2
    inodes = {p.name: p.stat().st_ino for p in first.dir.iterdir()}
    first.discard()
    second = DirtyFile.create(tmp_path, "second", 0, base=None, base_etag=None,
                              expect=Expect(), metadata={}, content_type=None, spares=spares)
    assert {p.name: p.stat().st_ino for p in second.dir.iterdir()} == {
        "data": inodes["data"], "log.1": inodes["log.2"], "state.json": inodes["state.json"]}
    second.write(0, b"new")
    os.close(second.fd)  # killed here
    again = DirtyFile.recover(second.dir)
    assert again.key == "second" and again.size == 3
    assert trio.run(again.read, 0, 100) == b"new"
    # a spool the store holds (file:// links it in as the file) is not emptied but let go
    again.write(0, b"newer")
    os.link(again.spool_path, tmp_path / "in-the-store")
    again.discard()
    assert (tmp_path / "in-the-store").read_bytes() == b"newer"
    taken = DirtyFile.create(tmp_path, "third", 0, base=None, base_etag=None,
                             expect=Expect(), metadata={}, content_type=None, spares=spares)
    assert os.stat(taken.spool_path).st_ino != (tmp_path / "in-the-store").stat().st_ino
    taken.discard()


def test_a_kept_directory_taken_by_a_file_killed_before_its_state_is_removed(
        tmp_path: Path) -> None:
    from storefs.backends.mem import MemBackend
    from storefs.backends.retrying import RetryingBackend
    from storefs.cache.chunks import ChunkCache
    from storefs.cache.fetch import Fetcher
    from storefs.cache.writeback import WriteBack

    root = tmp_path / "dirty"
    spares: list[str] = []
    df = DirtyFile.create(root, "old", 0, base=None, base_etag=None, expect=Expect(),
                          metadata={}, content_type=None, spares=spares)
    df.write(0, b"old bytes")
    df.discard()
    # the next create renamed it to a journal's name, then the kill came
    os.rename(spares.pop(), root / "1-cut")
    backend = RetryingBackend(MemBackend("t"))
    wb = WriteBack(backend, Fetcher(backend, ChunkCache(tmp_path / "c", 1 << 20), 1 << 20, 2),
                   root)
    assert wb.recover() == []
    assert list(root.iterdir()) == []


def test_a_discarded_journal_directory_is_taken_by_the_next_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a directory a file is created in costs ext4 a block each time: 200 us of a small
    # file's 1.2 ms on file://, where renaming a kept empty one costs 100 us
    made: list[str] = []
    real_mkdir = os.mkdir

    def mkdir(path: str, *args: object, **kwargs: object) -> None:
        made.append(str(path))
        real_mkdir(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "mkdir", mkdir)
    spares: list[str] = []
    for i in range(5):
        df = DirtyFile.create(tmp_path, f"k{i}", 0, base=None, base_etag=None,
                              expect=Expect(), metadata={}, content_type=None,
                              spares=spares)
        df.write(0, b"x")
        assert [p.name for p in tmp_path.iterdir()] == [df.dir.name]
        df.discard()
    assert len(made) == 1
    # without a place to keep it (a journal recovered on its own) the directory goes
    df = DirtyFile.recover(DirtyFile.create(tmp_path, "alone", 0, base=None, base_etag=None,
                                            expect=Expect(), metadata={},
                                            content_type=None).dir)
    df.discard()
    assert [p.name.startswith("free-") for p in tmp_path.iterdir()] == [True]


def test_recovery_removes_a_first_state_cut_short_and_keeps_a_damaged_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # the first state is written in place: a kill in the middle leaves it cut short, with
    # nothing acknowledged; recovery removes it, where a later torn state would be an error
    from storefs.backends.mem import MemBackend
    from storefs.backends.retrying import RetryingBackend
    from storefs.cache.chunks import ChunkCache
    from storefs.cache.fetch import Fetcher
    from storefs.cache.writeback import WriteBack

    root = tmp_path / "dirty"
    kept = DirtyFile.create(root, "kept", 0, base=None, base_etag=None, expect=Expect(),
                            metadata={}, content_type=None)
    kept.write(0, b"acknowledged")
    kept.set_metadata({"mode": "33188"})  # a second state: log.2
    cut = DirtyFile.create(root, "cut", 0, base=None, base_etag=None, expect=Expect(),
                           metadata={}, content_type=None)
    (cut.dir / "state.json").write_bytes((cut.dir / "state.json").read_bytes()[:20])
    # a damaged state of a file that has writes stays, with an error (as before)
    damaged = DirtyFile.create(root, "damaged", 0, base=None, base_etag=None,
                               expect=Expect(), metadata={}, content_type=None)
    damaged.write(0, b"acknowledged too")
    (damaged.dir / "state.json").write_bytes(b"{")
    spare = root / "free-0123"
    spare.mkdir()
    backend = RetryingBackend(MemBackend("t"))
    wb = WriteBack(backend, Fetcher(backend, ChunkCache(tmp_path / "c", 1 << 20), 1 << 20, 2),
                   root)
    with caplog.at_level(logging.ERROR):
        found = wb.recover()
    assert [df.key for df in found] == ["kept"]
    assert trio.run(found[0].read, 0, 100) == b"acknowledged"
    assert not cut.dir.exists() and not spare.exists()
    assert damaged.dir.exists()
    assert [r.getMessage().startswith("cannot recover") for r in caplog.records] == [True]
    # the mount keeps a recovered file's directory once it is done, for its next file
    found[0].discard()
    assert len(wb.spare_dirs) == 1
    new = wb.create("new", 0, base=None, base_etag=None, expect=Expect(), metadata={},
                    content_type=None)
    assert wb.spare_dirs == [] and new.spares is wb.spare_dirs
