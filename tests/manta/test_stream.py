"""Large files on Manta as one streaming PUT (the default ``uploads=stream``): fed part by part
while the file is written, checked by MD5 at the end, started over when the stream breaks."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from storefs.backends import manta
from storefs.backends.base import MiB, ObjectMeta
from storefs.backends.manta import MantaBackend
from storefs.backends.retrying import RetryingBackend
from storefs.cache.writeback import WriteBack
from storefs.errors import (
    AlreadyExists,
    ConfigError,
    IntegrityError,
    NotFound,
    UploadInterrupted,
)
from storefs.fs.filesystem import Filesystem
from storefs.fs.inodes import ROOT_INO
from storefs.source import parse_source
from tests.fs._util import start_fs
from tests.fs.test_core import write_file
from tests.manta.conftest import MakeBackend
from tests.servers.fixture_manta import MantaServer


@pytest.fixture
async def backend(make_backend: MakeBackend, manta_server: MantaServer,
                  stor: str) -> AsyncIterator[MantaBackend]:
    async with make_backend(stor, manta_server.options()) as b:
        yield b


async def filesystem_on(backend: MantaBackend, tmp_path: Path,
                        nursery: trio.Nursery) -> tuple[Filesystem, WriteBack]:
    """The filesystem core on ``backend``, as a mount builds it (no kernel)."""
    fs = await start_fs(RetryingBackend(backend), tmp_path, nursery)
    return fs, fs.writeback


async def test_parts_go_up_as_one_put_with_no_multipart_upload(
        backend: MantaBackend, manta_server: MantaServer, stor: str) -> None:
    assert backend.capabilities.sequential_parts
    part = backend.capabilities.part_size
    parts = [os.urandom(part), os.urandom(part), os.urandom(99)]
    before = dict(backend.requests)  # the server is shared: count this client's requests
    up = await backend.begin_upload("big", {"mode": "33188"}, part_size=part)
    for n, data in enumerate(parts, 1):
        await up.write_part(n, data)
    meta = await up.complete()
    whole = b"".join(parts)
    assert meta.size == len(whole)
    assert meta.checksums["md5"] == manta._b64md5(whole)
    head = await backend.head("big")
    assert (head.size, head.metadata["mode"]) == (len(whole), "33188")
    got = await backend.get_range("big", 0, len(whole))
    assert hashlib.md5(got).digest() == hashlib.md5(whole).digest()
    assert manta_server.ops(f"{stor}/big").get("PutObject") == 1
    # one PUT, and no POST (a multipart upload begins and commits with POSTs)
    sent = {m: n - before.get(m, 0) for m, n in backend.requests.items()}
    assert (sent.get("PUT"), sent.get("POST", 0)) == (1, 0), sent


async def test_a_stream_past_the_chunked_cap_breaks_and_stores_nothing(
        backend: MantaBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    part = backend.capabilities.part_size
    monkeypatch.setattr(manta, "STREAM_CAP", part + 10)
    up = await backend.begin_upload("capped", {}, part_size=part)
    with pytest.raises(UploadInterrupted, match="capped broke"):
        for n in (1, 2):
            await up.write_part(n, os.urandom(part))
        await up.complete()
    await up.abort()
    with pytest.raises(NotFound):
        await backend.head("capped")
    # with its size known the same bytes go up with Content-Length, which has no cap
    data = os.urandom(2 * part)
    up = await backend.begin_upload("capped", {}, part_size=part, size=len(data))
    await up.write_part(1, data[:part])
    await up.write_part(2, data[part:])
    assert (await up.complete()).size == len(data)


async def test_an_aborted_stream_drops_the_request_and_stores_nothing(
        backend: MantaBackend) -> None:
    part = backend.capabilities.part_size
    up = await backend.begin_upload("dropped", {}, part_size=part)
    await up.write_part(1, os.urandom(part))
    await up.abort()
    with pytest.raises(UploadInterrupted):
        await up.write_part(2, os.urandom(part))
    with pytest.raises(NotFound):
        await backend.head("dropped")


async def test_a_file_whose_stream_broke_is_sent_again_whole_at_close(
        backend: MantaBackend, manta_server: MantaServer, stor: str, tmp_path: Path,
        nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    # the stream started while the file was written hits Manta's chunked cap part-way
    monkeypatch.setattr(manta, "STREAM_CAP", 12 * MiB)
    fs, wb = await filesystem_on(backend, tmp_path, nursery)
    data = os.urandom(30 * MiB + 7)
    await write_file(fs, "grown", data)
    # the close sent it again with its Content-Length: whole, once, and it reads back
    assert wb.failures == 0 and wb.uploads == 1
    meta = await backend.head("grown")
    assert meta.size == len(data)
    assert meta.checksums["md5"] == manta._b64md5(data)
    assert await backend.get_range("grown", 0, len(data)) == data
    assert manta_server.ops(f"{stor}/grown").get("PutObject") == 2


async def test_bytes_that_differ_from_what_was_sent_fail_the_upload(
        backend: MantaBackend) -> None:
    part = backend.capabilities.part_size
    up = await backend.begin_upload("damaged", {}, part_size=part)
    await up.write_part(1, os.urandom(part))
    assert isinstance(up, manta.MantaStream)
    up._md5.update(b"what the server did not get")  # as if bytes changed in flight
    with pytest.raises(IntegrityError, match="damaged: the server received bytes with MD5"):
        await up.complete()


def test_an_unknown_upload_mode_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match=r"^manta: uploads='parallel': expected stream or "
                                          r"multipart$"):
        manta.settings_from(parse_source("manta:/jill/stor"),
                            {"url": "http://127.0.0.1:1", "uploads": "parallel"},
                            environ={}, section={})


async def test_open_streams_never_take_the_connections_other_requests_need(
        make_backend: MakeBackend, manta_server: MantaServer, stor: str) -> None:
    # four files being written at once on a mount with two connections
    async with make_backend(stor, manta_server.options(connections="2")) as b:
        await b.put("small", b"x", {})
        part = b.capabilities.part_size
        uploads = [await b.begin_upload(f"s{i}", {}, part_size=part) for i in range(4)]
        with trio.fail_after(30):
            for up in uploads:
                await up.write_part(1, os.urandom(part))
            # every stream holds a connection until its file is closed; a stat still works
            assert (await b.head("small")).size == 1
            for up in uploads:
                assert (await up.complete()).size == part


async def test_a_name_created_elsewhere_while_the_stream_ran_is_not_overwritten(
        backend: MantaBackend, make_backend: MakeBackend, manta_server: MantaServer,
        stor: str) -> None:
    # Manta checks If-None-Match when the PUT starts; the stream checks again before the
    # last bytes, which are what lets Manta commit the object
    part = backend.capabilities.part_size
    up = await backend.begin_upload("race", {}, part_size=part, if_none_match=True,
                                    size=2 * part)
    await up.write_part(1, os.urandom(part))
    await up.write_part(2, os.urandom(part))
    async with make_backend(stor, manta_server.options()) as other:
        await other.put("race", b"theirs", {})
    with pytest.raises(AlreadyExists):
        await up.complete()
    assert await backend.get_range("race", 0, 100) == b"theirs"


async def test_a_part_cancelled_half_sent_ends_the_stream(backend: MantaBackend) -> None:
    part = backend.capabilities.part_size
    up = await backend.begin_upload("half", {}, part_size=part)
    await up.write_part(1, os.urandom(part))
    with trio.move_on_after(0) as scope:  # cancelled at its first checkpoint
        await up.write_part(2, os.urandom(part))
    assert scope.cancelled_caught
    # neither a retry of the part nor a completion may go on from half a part
    with pytest.raises(UploadInterrupted, match="not sent whole"):
        await up.write_part(2, os.urandom(part))
    with pytest.raises(UploadInterrupted, match="not sent whole"):
        await up.complete()
    await up.abort()
    with pytest.raises(NotFound):
        await backend.head("half")


async def test_after_a_damaged_stream_the_retry_replaces_it_without_a_conflict(
        backend: MantaBackend, tmp_path: Path, nursery: trio.Nursery,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fs, wb = await filesystem_on(backend, tmp_path, nursery)
    original = manta.MantaStream.complete
    damaged: list[str] = []

    async def once_damaged(self: manta.MantaStream) -> ObjectMeta:
        if not damaged:  # the first stream's bytes differ from what was sent
            damaged.append(self.key)
            self._md5.update(b"lost in flight")
        return await original(self)

    monkeypatch.setattr(manta.MantaStream, "complete", once_damaged)
    data = os.urandom(20 * MiB + 3)
    h, inode = await fs.create(ROOT_INO, "checked", 0o644, os.O_WRONLY | os.O_CREAT, 0, 0)
    fs.remember(inode)
    for off in range(0, len(data), MiB):
        await fs.write(h.fh, off, data[off:off + MiB])
    with pytest.raises(IntegrityError):
        await fs.flush(h.fh)  # close reports it (EIO); the file stays pending
    await fs.flush(h.fh)  # the next attempt overwrites the damaged object: no conflict
    await fs.release(h.fh)
    assert damaged == ["checked"] and wb.conflicts == 0
    assert await backend.get_range("checked", 0, len(data)) == data
    page = await backend.list_page("")
    assert [o.key for o in page.objects if "conflict" in o.key] == []
