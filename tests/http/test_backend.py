"""The HTTP backend against real servers: nginx (JSON and HTML autoindex, HTTPS and plain,
Range, ETags, basic auth) and Python's http.server (HTML, no ETags, Range ignored)."""

from __future__ import annotations

import errno
import os
import tracemalloc
from pathlib import Path

import pytest

from storefs.backends._http_reads import READ_SIZE
from storefs.backends.base import ETag, MiB
from storefs.errors import NotFound, PreconditionFailed, ReadOnly
from tests.http.conftest import open_http, write_tree
from tests.servers.fixture_nginx import HttpServers

T0 = 1_700_000_000  # file mtimes are set, so versions are known


def options(servers: HttpServers, name: str) -> dict[str, str]:
    return {"ca_bundle": str(servers.ca)} if name == "https" else {}


def make(servers: HttpServers, files: dict[str, bytes | None], under: str = "") -> tuple[
        Path, str]:
    d, path = servers.fresh(under)
    write_tree(d, files)
    for i, p in enumerate(sorted(d.rglob("*"))):
        os.utime(p, (T0 + i, T0 + i))
    return d, path


TREE: dict[str, bytes | None] = {
    "a.txt": b"hello world",
    "foo.txt": b"foo",
    "foo/bar.txt": b"bar" * 100,
    "foo/deep/x": b"x",
    "empty/": None,
    "sp ace & amp.txt": b"s",
    "ünï.txt": b"u",
    "pct%20.txt": b"p",
}


@pytest.mark.parametrize("name", ["https", "http"])
async def test_json_listing_is_exact_and_sorted(servers: HttpServers, name: str) -> None:
    d, path = make(servers, TREE)
    async with open_http(servers.urls[name] + path, options(servers, name)) as b:
        page = await b.list_page("")
        assert page.next_token is None and page.prefixes == []
        keys = [o.key for o in page.objects]
        assert keys == sorted(keys) == ["a.txt", "empty/", "foo.txt", "foo/", "pct%20.txt",
                                        "sp ace & amp.txt", "ünï.txt"]
        by_key = {o.key: o for o in page.objects}
        assert by_key["foo/"].is_dir and by_key["empty/"].is_dir
        a = by_key["a.txt"]
        assert (a.size, a.mtime, a.is_dir) == (11, os.stat(d / "a.txt").st_mtime, False)
        assert by_key["foo/"].mtime == os.stat(d / "foo").st_mtime
        sub = await b.list_page("foo/")
        assert [(o.key, o.size) for o in sub.objects] == [("foo/bar.txt", 300),
                                                          ("foo/deep/", 0)]
        assert (await b.list_page("nothing/")).objects == []
        assert (await b.list_page("a.txt/")).objects == []


async def test_json_entries_carry_the_etag_a_head_gives(servers: HttpServers) -> None:
    d, path = make(servers, {"only/": None, **{f"only/{k}": v for k, v in TREE.items()}})
    async with open_http(servers.urls["http"] + path) as b:
        await b.list_page("")  # no file in it: nothing learnt yet
        assert b.etag_form == "unknown" and "HEAD" not in b.requests
        # the first listing with files HEADs one of them to see how the server makes
        # ETags (nginx: mtime and size in hex); from then on entries are complete
        first = {o.key: o for o in (await b.list_page("only/")).objects}
        assert b.etag_form == "nginx" and b.requests["HEAD"] == 1
        st = os.stat(d / "only" / "a.txt")
        assert first["only/a.txt"].etag == f'"{int(st.st_mtime):x}-b"'
        for key in ("only/a.txt", "only/foo.txt", "only/ünï.txt"):
            assert first[key].metadata_complete
            assert first[key].etag == (await b.head(key)).etag


@pytest.mark.parametrize("name", ["html", "py"])
async def test_html_index_fallback(servers: HttpServers, name: str) -> None:
    _, path = make(servers, TREE)
    async with open_http(servers.urls[name] + path) as b:
        page = await b.list_page("")
        assert [(o.key, o.is_dir) for o in page.objects] == [
            ("a.txt", False), ("empty/", True), ("foo.txt", False), ("foo/", True),
            ("pct%20.txt", False), ("sp ace & amp.txt", False), ("ünï.txt", False)]
        # sizes are not in an HTML page exactly: the filesystem asks HEAD
        assert not any(o.metadata_complete for o in page.objects if not o.is_dir)
        assert [o.key for o in (await b.list_page("foo/")).objects] == ["foo/bar.txt",
                                                                        "foo/deep/"]


async def test_names_that_are_not_utf8_are_left_out(servers: HttpServers) -> None:
    d, path = make(servers, {"ok.txt": b"1"})
    (d / os.fsdecode(b"\xe9t\xe9.txt")).write_bytes(b"2")
    for name in ("http", "py"):
        async with open_http(servers.urls[name] + path) as b:
            assert [o.key for o in (await b.list_page("")).objects] == ["ok.txt"]


async def test_paging_and_recursive_listing(servers: HttpServers) -> None:
    _, path = make(servers, TREE)
    async with open_http(servers.urls["http"] + path) as b:
        everything = [o.key for o in (await b.list_page("")).objects]
        keys: list[str] = []
        async for page in b.list("", delimiter="/"):
            keys += [o.key for o in page.objects]
        assert keys == everything
        paged: list[str] = []
        token = None
        while True:
            page = await b.list_page("", token=token, limit=2)
            assert len(page.objects) <= 2
            paged += [o.key for o in page.objects]
            token = page.next_token
            if token is None:
                break
        assert paged == everything
        tree = ["a.txt", "empty/", "foo.txt", "foo/", "foo/bar.txt", "foo/deep/", "foo/deep/x",
                "pct%20.txt", "sp ace & amp.txt", "ünï.txt"]
        walked: list[str] = []
        token = None
        while True:
            page = await b.list_page("", delimiter="", token=token, limit=3)
            walked += [o.key for o in page.objects]
            token = page.next_token
            if token is None:
                break
        assert walked == tree == sorted(tree)


@pytest.mark.parametrize("name", ["https", "py"])
async def test_head_of_files_and_directories(servers: HttpServers, name: str) -> None:
    d, path = make(servers, TREE)
    async with open_http(servers.urls[name] + path, options(servers, name)) as b:
        st = os.stat(d / "foo" / "bar.txt")
        meta = await b.head("foo/bar.txt")
        assert (meta.key, meta.size, meta.mtime, meta.is_dir) == ("foo/bar.txt", 300,
                                                                  st.st_mtime, False)
        assert meta.metadata_complete and meta.metadata == {}
        if name == "https":
            assert meta.etag == f'"{int(st.st_mtime):x}-{300:x}"'  # the server's ETag
        else:
            assert meta.etag == f"t{int(st.st_mtime):x}-{300:x}"  # no ETag: mtime + size
        for key in ("foo", "foo/", "foo/deep", "empty/"):
            dmeta = await b.head(key)
            assert dmeta.is_dir and dmeta.key == key.rstrip("/") + "/" and dmeta.size == 0
        assert (await b.head("")).is_dir
        with pytest.raises(NotFound) as exc:
            await b.head("missing.txt")
        assert exc.value.errno == errno.ENOENT and "\n" not in str(exc.value)
        with pytest.raises(NotFound):
            await b.head("a.txt/")


async def test_directory_mtimes_come_from_the_listing(servers: HttpServers) -> None:
    d, path = make(servers, TREE)
    async with open_http(servers.urls["http"] + path) as b:
        await b.list_page("")
        assert (await b.head("foo")).mtime == os.stat(d / "foo").st_mtime


@pytest.mark.parametrize("name", ["https", "http"])
async def test_ranged_reads(servers: HttpServers, name: str) -> None:
    _, path = make(servers, TREE)
    async with open_http(servers.urls[name] + path, options(servers, name)) as b:
        meta = await b.head("a.txt")
        assert await b.get_range("a.txt", 0, 5, if_match=meta.etag) == b"hello"
        assert await b.get_range("a.txt", 6, 11, if_match=meta.etag) == b"world"
        assert await b.get_range("a.txt", 6, 100) == b"world"
        assert await b.get_range("a.txt", 11, 20) == b""
        assert await b.get_range("a.txt", 3, 3) == b""
        assert b.ranges_ignored == 0


@pytest.mark.parametrize("where", ["nginx-max_ranges-0", "python-http.server"])
async def test_a_server_that_ignores_range(servers: HttpServers, where: str) -> None:
    data = os.urandom(32 * MiB)
    under, url = ("_norange", servers.urls["http"]) if where.startswith("nginx") \
        else ("", servers.urls["py"])
    _, path = make(servers, {"big.bin": data, "small": b"0123456789"}, under)
    async with open_http(url + path) as b:
        meta = await b.head("big.bin")
        assert await b.get_range("small", 2, 5, if_match=(await b.head("small")).etag) == \
            b"234"
        # an early range: only what comes before it is read, not the whole file
        before = b.bytes_in
        assert await b.get_range("big.bin", 1000, 2000, if_match=meta.etag) == \
            data[1000:2000]
        assert b.bytes_in - before < 2 * READ_SIZE
        # a late one: the bytes before it are dropped as they come
        tracemalloc.start()
        try:
            got = await b.get_range("big.bin", 31 * MiB, 31 * MiB + 4096, if_match=meta.etag)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert got == data[31 * MiB:31 * MiB + 4096]
        # a few socket reads' worth (storefs/backends/_http_reads.py), not the 31 MiB
        assert peak < 8 * READ_SIZE
        assert await b.get_range("big.bin", 32 * MiB - 3, 32 * MiB + 10) == data[-3:]
        assert b.ranges_ignored >= 4


@pytest.mark.parametrize("where", ["https", "nginx-max_ranges-0", "python-http.server"])
async def test_a_changed_file_is_never_mixed_in(servers: HttpServers, where: str) -> None:
    url = servers.urls["https" if where == "https" else "http" if where.startswith("nginx")
                       else "py"]
    under = "_norange" if where.startswith("nginx") else ""
    d, path = make(servers, {"f": b"version one", "g": b"same size A"}, under)
    async with open_http(url + path, options(servers, where)) as b:
        old = await b.head("f")
        assert await b.get_range("f", 0, 7, if_match=old.etag) == b"version"
        (d / "f").write_bytes(b"version two, longer")
        with pytest.raises(PreconditionFailed) as exc:
            await b.get_range("f", 0, 7, if_match=old.etag)
        assert exc.value.errno == errno.ESTALE and "\n" not in str(exc.value)
        # same size, another mtime
        g = await b.head("g")
        (d / "g").write_bytes(b"same size B")
        os.utime(d / "g", (T0 + 100, T0 + 100))
        with pytest.raises(PreconditionFailed):
            await b.get_range("g", 5, 11, if_match=g.etag)
        # the new version reads fine
        new = await b.head("g")
        assert new.etag != g.etag
        assert await b.get_range("g", 5, 11, if_match=new.etag) == b"size B"


async def test_a_listing_version_that_changed_is_detected(servers: HttpServers) -> None:
    d, path = make(servers, {"a": b"1", "b": b"22"})
    async with open_http(servers.urls["http"] + path) as b:
        await b.head("a")  # the backend learns how this server makes ETags
        listed = {o.key: o for o in (await b.list_page("")).objects}
        assert listed["b"].metadata_complete
        (d / "b").write_bytes(b"333")
        with pytest.raises(PreconditionFailed):
            await b.get_range("b", 0, 2, if_match=listed["b"].etag)
        # a shrunk file: the range is past its end now
        (d / "a").write_bytes(b"")
        with pytest.raises(PreconditionFailed):
            await b.get_range("a", 0, 1, if_match=listed["a"].etag)


async def test_basic_authentication(servers: HttpServers) -> None:
    _, path = make(servers, {"secret.txt": b"s3cr3t"}, "_auth")
    creds = {"ca_bundle": str(servers.ca), "username": servers.user,
             "password": servers.password}
    async with open_http(servers.urls["https"] + path, creds) as b:
        assert [o.key for o in (await b.list_page("")).objects] == ["secret.txt"]
        assert await b.get_range("secret.txt", 0, 6) == b"s3cr3t"
        assert servers.password not in b.describe() and servers.user in b.describe()
    # the user name may come with the URL
    url = servers.urls["https"].replace("://", f"://{servers.user}@") + path
    async with open_http(url, {"ca_bundle": str(servers.ca),
                               "password": servers.password}) as b:
        assert (await b.head("secret.txt")).size == 6


async def test_ca_bundle_wins_over_the_environment(servers: HttpServers,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    system = "/etc/ssl/certs/ca-certificates.crt"
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(var, system)
    monkeypatch.setenv("SSL_CERT_DIR", "/etc/ssl/certs")
    _, path = make(servers, {"x": b"x"})
    async with open_http(servers.urls["https"] + path, {"ca_bundle": str(servers.ca)}) as b:
        assert (await b.head("x")).size == 1
    async with open_http(servers.urls["https"] + path, {"insecure": "true"}) as b:
        assert (await b.head("x")).size == 1


async def test_writes_are_refused_with_erofs(servers: HttpServers) -> None:
    _, path = make(servers, {"x": b"x"})
    async with open_http(servers.urls["http"] + path) as b:
        assert b.capabilities.read_only and b.capabilities.real_directories
        calls = [
            b.put("x", b"y", {}), b.put("new", b"y", {}, if_none_match=True),
            b.begin_upload("big", {}, part_size=8 * MiB), b.delete("x"),
            b.delete_many(["x"]), b.copy("x", "y"), b.rename("x", "y"),
            b.make_dir("d/", {}), b.remove_dir("d/"), b.set_metadata("x", {"mode": "1"}),
            b.exchange("x", "y"),
        ]
        for call in calls:
            with pytest.raises(ReadOnly) as exc:
                await call
            assert exc.value.errno == errno.EROFS
            assert "read-only" in str(exc.value) and "\n" not in str(exc.value)
        assert await b.get_range("x", 0, 1, if_match=ETag("")) == b"x"
