"""Backend conformance: what the filesystem core relies on, checked on every backend.

Each test runs once per backend in ``conftest.FACTORIES`` against a real store (a real
local server for the cloud backends).  A backend that fails here breaks ``cp`` or ``mv``
on its mounts, so these are the contract, not a smoke test.
"""

from __future__ import annotations

import hashlib
import os

import pytest
import trio

from storefs.backends.base import Backend, ETag, ObjectMeta
from storefs.errors import AlreadyExists, NotEmpty, NotFound, PreconditionFailed


async def ensure_dirs(backend: Backend, key: str) -> None:
    """Create the parents of ``key`` on stores with real directories (the fs core does the
    same through mkdir); flat stores need nothing."""
    if not backend.capabilities.real_directories:
        return
    parts = key.rstrip("/").split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i]) + "/"
        try:
            await backend.head(d)
        except NotFound:
            await backend.make_dir(d, {})


async def put(backend: Backend, key: str, data: bytes, **meta: str) -> ObjectMeta:
    await ensure_dirs(backend, key)
    return await backend.put(key, data, meta)


async def list_all(backend: Backend, prefix: str,
                   delimiter: str = "/") -> tuple[list[str], list[str]]:
    keys: list[str] = []
    prefixes: list[str] = []
    async for page in backend.list(prefix, delimiter=delimiter):
        keys += [o.key for o in page.objects if o.key != prefix]
        prefixes += page.prefixes
    return keys, prefixes


def names_below(backend: Backend, keys: list[str], prefixes: list[str]) -> list[str]:
    """Entries of a delimited listing as a directory shows them: files, then ``sub/``."""
    return sorted(keys + prefixes)


async def test_head_missing_is_not_found(backend: Backend) -> None:
    with pytest.raises(NotFound):
        await backend.head("no-such-key")


async def test_put_head_get_round_trip(backend: Backend) -> None:
    data = os.urandom(100_000)
    meta = await put(backend, "a.bin", data, mode="33188", mtime="1700000000.5")
    assert meta.size == len(data)
    assert meta.etag
    head = await backend.head("a.bin")
    assert head.size == len(data)
    assert head.etag == meta.etag
    assert not head.is_dir
    assert head.metadata.get("mode") == "33188"
    assert head.metadata.get("mtime") == "1700000000.5"
    assert await backend.get_range("a.bin", 0, len(data)) == data


async def test_get_range_slices_and_end_of_object(backend: Backend) -> None:
    data = bytes(range(256)) * 40
    await put(backend, "r", data)
    assert await backend.get_range("r", 0, 10) == data[:10]
    assert await backend.get_range("r", 1000, 5000) == data[1000:5000]
    # a range past the end returns what there is, like a short read
    assert await backend.get_range("r", len(data) - 5, len(data) + 100) == data[-5:]
    assert await backend.get_range("r", len(data), len(data) + 10) == b""


async def test_get_range_of_missing_key_is_not_found(backend: Backend) -> None:
    with pytest.raises(NotFound):
        await backend.get_range("gone", 0, 10)


async def test_empty_object(backend: Backend) -> None:
    await put(backend, "empty", b"")
    assert (await backend.head("empty")).size == 0
    assert await backend.get_range("empty", 0, 100) == b""


async def test_overwrite_changes_etag_and_if_match_guards_reads(backend: Backend) -> None:
    old = await put(backend, "v", b"version one")
    new = await backend.put("v", b"version two!", {})
    assert new.etag != old.etag
    assert await backend.get_range("v", 0, 100, if_match=new.etag) == b"version two!"
    with pytest.raises(PreconditionFailed):
        await backend.get_range("v", 0, 100, if_match=old.etag)


async def test_conditional_put(backend: Backend) -> None:
    if not backend.capabilities.conditional_put:
        pytest.skip("store has no conditional writes (documented in SEMANTICS.md)")
    first = await put(backend, "c", b"1")
    with pytest.raises(AlreadyExists):
        await backend.put("c", b"2", {}, if_none_match=True)
    with pytest.raises(PreconditionFailed):
        await backend.put("c", b"2", {}, if_match=ETag("not-the-etag"))
    second = await backend.put("c", b"3", {}, if_match=first.etag)
    assert await backend.get_range("c", 0, 10) == b"3"
    await backend.put("c-new", b"x", {}, if_none_match=True)
    assert (await backend.head("c-new")).size == 1
    assert second.etag != first.etag


async def test_metadata_keys_and_values_survive(backend: Backend) -> None:
    meta = {"mode": "33261", "uid": "1000", "gid": "100", "mtime": "1234567890.25",
            "xattr": "%7B%22user.a%22%3A%22Yg%3D%3D%22%7D"}
    await put(backend, "m", b"x", **meta)
    got = (await backend.head("m")).metadata
    for k, v in meta.items():
        assert got.get(k) == v, k


async def test_set_metadata_replaces_the_set_and_keeps_data(backend: Backend) -> None:
    data = os.urandom(3000)
    await put(backend, "sm", data, mode="33188", uid="1")
    after = await backend.set_metadata("sm", {"mode": "33261"})
    assert after.size == len(data)
    head = await backend.head("sm")
    assert head.metadata.get("mode") == "33261"
    assert "uid" not in head.metadata  # a whole new set, not a merge
    assert await backend.get_range("sm", 0, len(data)) == data


async def test_delete_is_idempotent(backend: Backend) -> None:
    await put(backend, "d", b"x")
    await backend.delete("d")
    with pytest.raises(NotFound):
        await backend.head("d")
    await backend.delete("d")
    await backend.delete("never-existed")


async def test_delete_many(backend: Backend) -> None:
    for i in range(5):
        await put(backend, f"dm/{i}", b"x")
    await backend.delete_many([f"dm/{i}" for i in range(5)] + ["dm/missing"])
    keys, _ = await list_all(backend, "dm/")
    assert keys == []


async def test_copy_keeps_or_replaces_metadata(backend: Backend) -> None:
    data = os.urandom(5000)
    await put(backend, "src", data, mode="33188")
    await ensure_dirs(backend, "sub/dst")
    meta = await backend.copy("src", "sub/dst")
    assert meta.size == len(data)
    assert await backend.get_range("sub/dst", 0, len(data)) == data
    assert (await backend.head("sub/dst")).metadata.get("mode") == "33188"
    await backend.copy("src", "dst2", metadata={"mode": "33216"})
    assert (await backend.head("dst2")).metadata.get("mode") == "33216"
    assert await backend.get_range("src", 0, len(data)) == data  # source untouched
    with pytest.raises(NotFound):
        await backend.copy("missing", "x")


async def test_rename_moves_one_object(backend: Backend) -> None:
    await put(backend, "old", b"payload", mode="33188")
    await backend.rename("old", "new")
    with pytest.raises(NotFound):
        await backend.head("old")
    assert await backend.get_range("new", 0, 100) == b"payload"
    assert (await backend.head("new")).metadata.get("mode") == "33188"


async def test_listed_objects_copy_and_delete_as_a_tree_move_does(backend: Backend) -> None:
    if backend.capabilities.real_directories:
        pytest.skip("trees on stores with real directories move entry by entry")
    big = os.urandom(300_000)
    await put(backend, "tm/a", big, mode="33261", mtime="1700000000")
    await put(backend, "tm/sub/empty", b"", mode="33152")
    await backend.put("tm/sub/", b"", {"mode": "16877"}, content_type="application/x-directory")
    listed: list[ObjectMeta] = []
    async for page in backend.list("tm/", delimiter=""):
        listed += page.objects
    assert sorted(o.key for o in listed) == ["tm/a", "tm/sub/", "tm/sub/empty"]
    for obj in listed:
        await backend.copy_listed(obj, "moved/" + obj.key[len("tm/"):])
    await backend.delete_listed(listed)
    await backend.delete_listed(listed)  # idempotent, as delete is
    keys, prefixes = await list_all(backend, "tm/", delimiter="")
    assert keys == [] and prefixes == []
    assert await backend.get_range("moved/a", 0, len(big)) == big
    a = await backend.head("moved/a")
    assert (a.metadata.get("mode"), a.metadata.get("mtime")) == ("33261", "1700000000")
    empty = await backend.head("moved/sub/empty")
    assert empty.size == 0 and empty.metadata.get("mode") == "33152"
    assert (await backend.head("moved/sub/")).metadata.get("mode") == "16877"


async def test_delimited_listing_paged_sorted_without_duplicates(backend: Backend) -> None:
    names = [f"f{i:03d}" for i in range(23)]
    for n in names:
        await put(backend, f"dir/{n}", n.encode())
    for sub in ("s1", "s2"):
        await put(backend, f"dir/{sub}/inner", b"x")
    keys, prefixes = await list_all(backend, "dir/")
    if backend.capabilities.real_directories:
        # subdirectories come back as directory objects with their metadata
        assert [k for k in keys if not k.endswith("/")] == [f"dir/{n}" for n in names]
        assert sorted(k for k in keys if k.endswith("/")) + prefixes == ["dir/s1/", "dir/s2/"]
    else:
        assert keys == [f"dir/{n}" for n in names]
        assert prefixes == ["dir/s1/", "dir/s2/"]
    # the sizes in listings are real, so ls -l needs no HEAD per entry
    async for page in backend.list("dir/"):
        for o in page.objects:
            if not o.is_dir:
                assert o.size == 4


async def test_listing_pages_follow_tokens(backend: Backend) -> None:
    for i in range(20):
        await put(backend, f"pg/{i:02d}", b"x")
    pages = 0
    seen: list[str] = []
    token = None
    while True:
        page = await backend.list_page("pg/", token=token, limit=6)
        pages += 1
        seen += [o.key for o in page.objects]
        token = page.next_token
        if token is None:
            break
    assert seen == [f"pg/{i:02d}" for i in range(20)]
    assert pages >= 4


async def test_recursive_listing(backend: Backend) -> None:
    for k in ("rec/a", "rec/b/c", "rec/b/d/e"):
        await put(backend, k, b"x")
    keys, prefixes = await list_all(backend, "rec/", delimiter="")
    files = sorted(k for k in keys if not k.endswith("/"))
    assert files == ["rec/a", "rec/b/c", "rec/b/d/e"]
    assert prefixes == []


async def test_listing_empty_or_missing_prefix_is_empty(backend: Backend) -> None:
    keys, prefixes = await list_all(backend, "nothing-here/")
    assert keys == [] and prefixes == []


async def test_directories(backend: Backend) -> None:
    await ensure_dirs(backend, "top/x")
    await backend.make_dir("top/empty/", {"mode": "16877"})
    head = await backend.head("top/empty/")
    assert head.metadata.get("mode") == "16877"
    keys, prefixes = await list_all(backend, "top/")
    assert "top/empty/" in keys + prefixes
    await put(backend, "top/full/f", b"x")
    if backend.capabilities.real_directories:
        assert (await backend.head("top/empty")).is_dir
        with pytest.raises(NotEmpty):
            await backend.remove_dir("top/full/")
    await backend.remove_dir("top/empty/")
    keys, prefixes = await list_all(backend, "top/")
    assert "top/empty/" not in keys + prefixes


async def test_multipart_upload_assembles_parts_in_order(backend: Backend) -> None:
    size = backend.capabilities.min_part_size
    parts = [os.urandom(size), os.urandom(size), os.urandom(1234)]
    await ensure_dirs(backend, "mp/big")
    upload = await backend.begin_upload("mp/big", {"mode": "33188"}, part_size=size)
    # parts may arrive concurrently and out of order
    if backend.capabilities.sequential_parts:
        for n in (1, 2, 3):
            await upload.write_part(n, parts[n - 1])
    else:
        async with trio.open_nursery() as nursery:
            for n in (3, 1, 2):
                nursery.start_soon(upload.write_part, n, parts[n - 1])
    meta = await upload.complete()
    whole = b"".join(parts)
    assert meta.size == len(whole)
    head = await backend.head("mp/big")
    assert head.size == len(whole)
    assert head.metadata.get("mode") == "33188"
    got = await backend.get_range("mp/big", 0, len(whole))
    assert hashlib.md5(got).digest() == hashlib.md5(whole).digest()


async def test_aborted_upload_leaves_nothing(backend: Backend) -> None:
    upload = await backend.begin_upload("ab", {}, part_size=backend.capabilities.min_part_size)
    await upload.write_part(1, b"x" * 1000)
    await upload.abort()
    await upload.abort()
    with pytest.raises(NotFound):
        await backend.head("ab")
    keys, _ = await list_all(backend, "")
    assert "ab" not in keys


async def test_unusual_names(backend: Backend) -> None:
    for name in ("with space", "ünïcødé-名前", "semi;colon", "pct%41", "plus+sign", "q?mark"):
        await put(backend, f"names/{name}", name.encode())
        assert await backend.get_range(f"names/{name}", 0, 100) == name.encode()
    keys, _ = await list_all(backend, "names/")
    assert len(keys) == 6
