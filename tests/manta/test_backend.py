"""Manta-specific behaviour of the backend, checked against the test server."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
import trio

from storefs.backends.base import MiB
from storefs.backends.manta import open_backend
from storefs.errors import (
    AlreadyExists,
    AuthError,
    IntegrityError,
    NotADirectory,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    TooLarge,
)
from storefs.source import parse_source
from tests.manta.conftest import MakeBackend
from tests.servers.fixture_manta import MantaServer


async def test_agent_key_by_fingerprint(make_backend: MakeBackend, manta_server: MantaServer,
                                        agent_env: str, stor: str) -> None:
    # only the agent holds this key (its file needs a passphrase): found by SHA256
    opts = {"url": manta_server.url, "key_id": manta_server.keys["agent"]["sha256"]}
    async with make_backend(stor, opts) as b:
        assert b.key is not None and b.key.source == "ssh-agent"
        assert b.key.md5 == manta_server.keys["agent"]["md5"]
        await b.put("via-agent", b"signed by ssh-agent", {})
        assert await b.get_range("via-agent", 0, 100) == b"signed by ssh-agent"


async def test_passphrase_key_file_through_agent(make_backend: MakeBackend,
                                                 manta_server: MantaServer, agent_env: str,
                                                 stor: str) -> None:
    async with make_backend(stor, manta_server.options("agent")) as b:
        assert b.key is not None and b.key.source == "ssh-agent"
        await b.make_dir("d/", {})


async def test_passphrase_key_file_without_agent(make_backend: MakeBackend,
                                                 manta_server: MantaServer, no_agent: None,
                                                 stor: str) -> None:
    path = manta_server.keys["agent"]["private"]
    with pytest.raises(AuthError) as info:
        async with make_backend(stor, manta_server.options("agent")):
            pass
    assert str(info.value) == (f"manta: key file {path} is protected by a passphrase and "
                               f"ssh-agent does not hold it; run: ssh-add {path}")


async def test_ecdsa_file_key_and_md5_key_id(make_backend: MakeBackend,
                                             manta_server: MantaServer, stor: str) -> None:
    key = manta_server.keys["ecdsa"]
    async with make_backend(stor, manta_server.options("ecdsa", key_id=key["md5_printed"])) as b:
        await b.put("ec", b"p-256", {})
        assert (await b.head("ec")).size == 5


async def test_subuser_with_role(make_backend: MakeBackend, manta_server: MantaServer,
                                 stor: str) -> None:
    # even when asked for multipart uploads
    opts = manta_server.options("bob", subuser="bob", role="writer", uploads="multipart")
    async with make_backend(stor, opts) as b:
        assert b.auth is not None and b.auth.key_id.startswith("/jill/bob/keys/")
        await b.make_dir("sub/", {"mode": "16877"})
        await b.put("sub/f", b"by bob", {"uid": "7"})
        assert (await b.head("sub/f")).metadata == {"uid": "7"}
        # sub-users may not use multipart uploads: the parts are one streaming PUT
        assert b.capabilities.sequential_parts
        part = b.capabilities.min_part_size
        data = os.urandom(part) + b"end"
        up = await b.begin_upload("sub/big", {}, part_size=part)
        await up.write_part(1, data[:part])
        await up.write_part(2, data[part:])
        meta = await up.complete()
        assert meta.size == len(data)
        got = await b.get_range("sub/big", 0, len(data))
        assert hashlib.md5(got).digest() == hashlib.md5(data).digest()
    counted = manta_server.ops(stor + "/")
    assert counted.get("PutObject") == 2 and "UploadPart" not in counted
    async with make_backend(stor, manta_server.options("bob", subuser="bob",
                                                       role="reader")) as reader:
        assert await reader.get_range("sub/f", 0, 10) == b"by bob"
        with pytest.raises(PermissionDenied, match="AuthorizationFailed"):
            await reader.put("sub/g", b"x", {})


async def test_rename_is_a_snaplink_on_v1(make_backend: MakeBackend, manta_server: MantaServer,
                                          stor: str) -> None:
    data = os.urandom(200_000)
    async with make_backend(stor, manta_server.options()) as b:
        await b.put("old", data, {"mode": "33188"})
        before = manta_server.ops(f"{stor}/new")
        meta = await b.rename("old", "new")
        assert meta.size == len(data) and meta.metadata == {"mode": "33188"}
        assert await b.get_range("new", 0, len(data)) == data
    moved = manta_server.ops(f"{stor}/new")
    assert moved.get("PutSnapLink", 0) - before.get("PutSnapLink", 0) == 1
    # no bytes were copied: nothing was written to the new name but the link
    assert moved.get("PutObject", 0) == 0
    assert manta_server.stats(f"{stor}/old")["bytes_out"] == 0


async def test_rename_copies_on_v2(make_backend: MakeBackend, manta_v2_server: MantaServer,
                                   ) -> None:
    stor = manta_v2_server.fresh_dir("manta")
    data = os.urandom(3 * MiB + 5)
    async with make_backend(stor, manta_v2_server.options()) as b:
        assert not b.snaplinks  # Server: Manta/2 seen at connect
        await b.put("old", data, {"mode": "33188"})
        meta = await b.rename("old", "new")
        assert meta.metadata == {"mode": "33188"}
        assert await b.get_range("new", 0, len(data)) == data
        assert (await b.list_page("")).objects[0].key == "new"
    assert manta_v2_server.ops(f"{stor}/new").get("PutObject") == 1
    assert manta_v2_server.stats(f"{stor}/old")["bytes_out"] == len(data)
    assert "PutSnapLink" not in manta_v2_server.ops(stor + "/")


async def test_v2_fallback_when_snaplinks_are_refused(make_backend: MakeBackend,
                                                      manta_v2_server: MantaServer) -> None:
    stor = manta_v2_server.fresh_dir("manta")
    async with make_backend(stor, manta_v2_server.options(), connect=False) as b:
        # without connect() the backend does not know it is v2: it learns from the error
        await b.put("a", b"abc", {})
        await b.copy("a", "b")
        assert not b.snaplinks
        assert await b.get_range("b", 0, 10) == b"abc"
    # one refused link, then the copy; the GET is the read-back above
    assert manta_v2_server.ops(f"{stor}/b") == {"PutSnapLink": 1, "PutObject": 1,
                                                 "GetObject": 1}


async def test_metadata_update_does_not_rewrite_data(make_backend: MakeBackend,
                                                     manta_server: MantaServer,
                                                     stor: str) -> None:
    data = os.urandom(1 * MiB)
    async with make_backend(stor, manta_server.options()) as b:
        first = await b.put("f", data, {"mode": "33188", "uid": "1"})
        after = await b.set_metadata("f", {"mode": "33261"}, if_match=first.etag)
        assert after.etag == first.etag and after.size == len(data)
        head = await b.head("f")
        assert head.metadata == {"mode": "33261"}
        assert await b.get_range("f", 0, len(data)) == data
        await b.make_dir("d/", {"mode": "16877"})
        await b.set_metadata("d/", {"mode": "16832"})
        assert (await b.head("d")).metadata == {"mode": "16832"}
    counted = manta_server.ops(f"{stor}/f")
    assert counted["PutObject"] == 1 and counted["PutMetadata"] == 1
    assert manta_server.stats(f"{stor}/f")["bytes_in"] == len(data)


async def test_concurrent_writer_is_detected(make_backend: MakeBackend,
                                             manta_server: MantaServer, stor: str) -> None:
    async with make_backend(stor, manta_server.options()) as b:
        ours = await b.put("shared", b"version 1", {})
        # another client replaces the object behind our back
        async with httpx.AsyncClient(auth=manta_server.auth) as other:
            r = await other.put(f"{manta_server.url}{stor}/shared", content=b"version 2")
            assert r.status_code == 204
            r = await other.put(f"{manta_server.url}{stor}/fresh", content=b"theirs")
            assert r.status_code == 204
        with pytest.raises(PreconditionFailed):
            await b.get_range("shared", 0, 100, if_match=ours.etag)
        with pytest.raises(PreconditionFailed):
            await b.put("shared", b"version 3", {}, if_match=ours.etag)
        with pytest.raises(PreconditionFailed):
            await b.set_metadata("shared", {"mode": "1"}, if_match=ours.etag)
        with pytest.raises(AlreadyExists):
            await b.put("fresh", b"ours", {}, if_none_match=True)
        assert await b.get_range("shared", 0, 100) == b"version 2"
        assert await b.get_range("fresh", 0, 100) == b"theirs"


async def test_public_read_without_credentials(manta_server: MantaServer, stor: str,
                                               monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    name = os.path.basename(stor)
    async with httpx.AsyncClient(base_url=manta_server.url, auth=manta_server.auth) as c:
        for path in (f"/jill/public/{name}", f"/jill/public/{name}/sub"):
            await c.put(path, headers={"Content-Type": "application/json; type=directory"})
        await c.put(f"/jill/public/{name}/sub/hello.txt", content=b"hello, world")
    # no agent, no ~/.ssh, no MANTA_* variables: nothing to sign with
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("SSH_AUTH_SOCK", "MANTA_KEY_ID", "MANTA_USER", "MANTA_SUBUSER", "MANTA_ROLE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STOREFS_CONFIG", str(tmp_path / "none.yaml"))
    (tmp_path / "none.yaml").write_text("{}\n")
    b = open_backend(parse_source(f"manta:/jill/public/{name}"), {"url": manta_server.url})
    try:
        await b.connect()
        assert b.capabilities.read_only and b.auth is None
        assert "anonymous" in b.describe()
        assert [o.key for o in (await b.list_page("")).objects] == ["sub/"]
        assert await b.get_range("sub/hello.txt", 0, 5) == b"hello"
    finally:
        await b.aclose()
    anon = open_backend(parse_source("manta:/jill/stor"),
                        {"url": manta_server.url, "anonymous": "true"})
    with pytest.raises(AuthError, match=r"anonymous may not read /jill/stor"):
        await anon.connect()
    await anon.aclose()


async def test_full_reads_are_checked_against_the_md5(make_backend: MakeBackend,
                                                      manta_server: MantaServer,
                                                      stor: str) -> None:
    data = os.urandom(100_000)
    async with make_backend(stor, manta_server.options()) as b:
        await b.put("x", data, {})
        assert await b.get_range("x", 0, 1 << 20) == data
        blob = manta_server.blob_file(f"{stor}/x")
        damaged = bytearray(blob.read_bytes())
        damaged[500] ^= 0xFF
        blob.write_bytes(bytes(damaged))
        await b.head("x")  # the size is known: a whole-object read is a plain GET
        with pytest.raises(IntegrityError, match="do not match their MD5"):
            await b.get_range("x", 0, 1 << 20)


async def test_directory_guards(make_backend: MakeBackend, manta_server: MantaServer,
                                stor: str) -> None:
    async with make_backend(stor, manta_server.options()) as b:
        await b.put("file", b"precious", {})
        # PutDirectory would silently replace the object: make_dir refuses instead
        with pytest.raises(AlreadyExists):
            await b.make_dir("file/", {})
        with pytest.raises(NotADirectory):
            await b.remove_dir("file/")
        assert await b.get_range("file", 0, 100) == b"precious"
        with pytest.raises(TooLarge, match="Manta keeps at most 4096"):
            await b.put("meta", b"x", {f"k{i}": "v" * 100 for i in range(50)})


async def test_listing_pages_of_1024_with_the_inclusive_marker(
        make_backend: MakeBackend, manta_server: MantaServer, stor: str) -> None:
    n = 1030
    async with make_backend(stor, manta_server.options()) as b:
        async with trio.open_nursery() as nursery:
            limiter = trio.CapacityLimiter(4)

            async def one(i: int) -> None:
                async with limiter:
                    await b.put(f"e{i:05d}", b"", {})

            for i in range(n):
                nursery.start_soon(one, i)
        sizes = []
        keys: list[str] = []
        async for page in b.list(""):
            sizes.append(len(page.objects))
            keys += [o.key for o in page.objects]
        assert keys == [f"e{i:05d}" for i in range(n)]
        assert sizes[0] == 1024


async def test_large_writes_into_a_missing_directory_fail_at_once(
        make_backend: MakeBackend, manta_server: MantaServer, manta_v2_server: MantaServer,
        stor: str) -> None:
    # the server answers before reading the body: the error is the answer, not a reset
    async with make_backend(stor, manta_server.options()) as b:
        with pytest.raises(NotFound, match="DirectoryDoesNotExist"):
            await b.put("no/such/dir/f", os.urandom(8 * MiB), {})
    v2dir = manta_v2_server.fresh_dir("manta")
    async with make_backend(v2dir, manta_v2_server.options()) as b:
        await b.put("src", os.urandom(8 * MiB), {})
        with pytest.raises(NotFound, match="DirectoryDoesNotExist"):
            await b.copy("src", "no/such/dst")
