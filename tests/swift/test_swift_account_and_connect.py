"""``swift:`` (whole account) mounts, credentials from the environment, and what ``connect``
says when the mount cannot go live."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from storefs.backends.swift import SwiftBackend, connection_kwargs, open_backend
from storefs.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    NotEmpty,
    NotFound,
    PermissionDenied,
)
from storefs.source import parse_source
from tests.servers._shared import free_port
from tests.swift._util import drop_container, sdk_connection, swift_backend

#: the second tempauth account: account-mode tests list it whole, so they keep off AUTH_test
OTHER = "test2:tester2"


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    return text


@pytest.fixture
async def account(swift_server: dict[str, Any]) -> AsyncIterator[SwiftBackend]:
    backend = swift_backend(swift_server, "", user=OTHER)
    await backend.connect()
    yield backend
    await backend.aclose()


async def test_account_mode_containers_are_top_level_directories(
        account: SwiftBackend, swift_server: dict[str, Any]) -> None:
    name = f"acct-{uuid.uuid4().hex[:12]}"
    sdk = sdk_connection(swift_server, OTHER)
    try:
        await account.make_dir(f"{name}/", {"mode": "16877"})
        headers = await trio.to_thread.run_sync(sdk.head_container, name)
        assert headers["x-container-meta-mode"] == "16877"
        assert (await account.head(f"{name}/")).is_dir
        roots: list[str] = []
        async for page in account.list(""):
            roots += page.prefixes
        assert f"{name}/" in roots
        await account.put(f"{name}/dir/file", b"inside", {"mtime": "5"})
        assert await account.get_range(f"{name}/dir/file", 0, 10) == b"inside"
        page = await account.list_page(f"{name}/")
        assert page.prefixes == [f"{name}/dir/"]
        with pytest.raises(NotEmpty) as err:
            await account.remove_dir(f"{name}/")
        assert one_line(err.value) == f"swift: container {name!r} is not empty"
        with pytest.raises(PermissionDenied):
            await account.put("top-level-file", b"x", {})
        await account.delete(f"{name}/dir/file")
        await account.remove_dir(f"{name}/")
        with pytest.raises(NotFound):
            await account.head(f"{name}/")
    finally:
        await trio.to_thread.run_sync(lambda: drop_container(swift_server, name, OTHER))


async def test_account_mode_recursive_listing_walks_every_container(
        account: SwiftBackend, swift_server: dict[str, Any]) -> None:
    names = sorted(f"walk-{uuid.uuid4().hex[:10]}" for _ in range(2))
    try:
        for n in names:
            await account.make_dir(f"{n}/", {})
        await account.put(f"{names[0]}/a/b", b"1", {})
        keys: list[str] = []
        async for page in account.list("", delimiter=""):
            keys += [o.key for o in page.objects]
        for n in names:
            assert f"{n}/" in keys
        assert f"{names[0]}/a/b" in keys
    finally:
        for n in names:
            await trio.to_thread.run_sync(lambda n=n: drop_container(swift_server, n, OTHER))


async def test_wrong_key(swift_server: dict[str, Any], container: str) -> None:
    kwargs = connection_kwargs({"auth_url": swift_server["auth_url"],
                                "username": swift_server["user"], "password": "not-the-key"})
    backend = SwiftBackend(container, "", kwargs, auth_url=swift_server["auth_url"])
    with pytest.raises(AuthError) as err:
        await backend.connect()
    text = one_line(err.value)
    assert text == f"swift: credentials refused by {swift_server['auth_url']}"
    assert "not-the-key" not in text


async def test_missing_container(swift_server: dict[str, Any]) -> None:
    backend = swift_backend(swift_server, "no-such-container")
    with pytest.raises(NotFound) as err:
        await backend.connect()
    assert one_line(err.value) == ("swift: container 'no-such-container' does not exist "
                                   "(create it with: swift post no-such-container)")


async def test_unreachable_endpoint() -> None:
    url = f"http://127.0.0.1:{free_port()}/auth/v1.0"
    kwargs = connection_kwargs({"auth_url": url, "username": "u", "password": "p",
                                "timeout": "5"})
    backend = SwiftBackend("c", "", kwargs, auth_url=url)
    with pytest.raises(ConnectError) as err:
        await backend.connect()
    assert one_line(err.value) == f"swift: cannot reach {url}: connection refused"


async def test_token_and_storage_url_without_auth(swift_server: dict[str, Any],
                                                  container: str) -> None:
    url, token = await trio.to_thread.run_sync(sdk_connection(swift_server).get_auth)
    backend = open_backend(parse_source(f"swift://{container}"),
                           {"storage_url": url, "auth_token": token})
    await backend.connect()
    await backend.put("via-token", b"ok", {})
    assert await backend.get_range("via-token", 0, 5) == b"ok"
    await backend.aclose()
    stale = open_backend(parse_source(f"swift://{container}"),
                         {"storage_url": url, "auth_token": "AUTH_tk0000"})
    with pytest.raises(AuthError):
        await stale.connect()


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("OS_", "ST_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STOREFS_CONFIG", "")


async def test_st_variables_mount_a_container(swift_server: dict[str, Any], container: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.setenv("ST_AUTH", swift_server["auth_url"])
    monkeypatch.setenv("ST_USER", swift_server["user"])
    monkeypatch.setenv("ST_KEY", swift_server["key"])
    monkeypatch.setenv("OS_AUTH_URL", "http://127.0.0.1:1/v3")  # ST_AUTH wins, as in swift
    backend = open_backend(parse_source(f"swift://{container}/sub/dir"), {})
    assert backend.prefix == "sub/dir/"
    await backend.connect()
    await backend.put("f", b"via ST_*", {})
    await backend.aclose()
    _, body = await trio.to_thread.run_sync(
        lambda: sdk_connection(swift_server).get_object(container, "sub/dir/f"))
    assert body == b"via ST_*"


def test_openstack_rc_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    rc = {"OS_AUTH_URL": "https://keystone.example:5000/v3", "OS_IDENTITY_API_VERSION": "3",
          "OS_USERNAME": "jill", "OS_PASSWORD": "s3cret", "OS_USER_DOMAIN_NAME": "Default",
          "OS_PROJECT_NAME": "science", "OS_PROJECT_DOMAIN_NAME": "Default",
          "OS_REGION_NAME": "RegionTwo", "OS_INTERFACE": "internal"}
    for k, v in rc.items():
        monkeypatch.setenv(k, v)
    backend = open_backend(parse_source("swift:"), {"region": "RegionOne"})
    kw = backend._conn_kwargs
    auth = kw["session"].auth  # keystoneauth1's v3 password plugin
    assert auth.auth_url == "https://keystone.example:5000/v3"
    method = auth.auth_methods[0]
    assert (method.username, method.password, method.user_domain_name) == (
        "jill", "s3cret", "Default")
    assert (auth.project_name, auth.project_domain_name) == ("science", "Default")
    assert kw["os_options"]["region_name"] == "RegionOne"  # -o wins over the environment
    assert kw["os_options"]["endpoint_type"] == "internal"
    assert backend.account_mode
    assert "s3cret" not in backend.describe()
    monkeypatch.setenv("OS_APPLICATION_CREDENTIAL_ID", "abc123")
    monkeypatch.setenv("OS_APPLICATION_CREDENTIAL_SECRET", "appsecret")
    kw = open_backend(parse_source("swift://c"), {})._conn_kwargs
    assert kw["os_options"]["auth_type"] == "v3applicationcredential"
    assert kw["session"].auth.auth_methods[0].application_credential_id == "abc123"
    # a versionless identity URL gets /v3, as swiftclient does it
    kw = open_backend(parse_source("swift://c"),
                      {"auth_url": "https://keystone.example:5000"})._conn_kwargs
    assert kw["session"].auth.auth_url == "https://keystone.example:5000/v3"


def test_no_or_partial_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    with pytest.raises(AuthError) as err:
        open_backend(parse_source("swift://c"), {})
    assert one_line(err.value).startswith("swift: no credentials: source your OpenStack RC")
    monkeypatch.setenv("OS_AUTH_URL", "https://keystone.example/v3")
    with pytest.raises(AuthError) as err:
        open_backend(parse_source("swift://c"), {})
    assert "OS_USERNAME/OS_PASSWORD" in one_line(err.value)
    for bad in ({"auth_version": "7"}, {"interface": "sideways"}, {"connections": "-1"}):
        with pytest.raises(ConfigError) as cerr:
            open_backend(parse_source("swift://c"), {"username": "u", "password": "p", **bad})
        one_line(cerr.value)


async def test_account_mode_containers_are_found_and_moved_as_directories(
        swift_server: dict[str, Any], tmp_path: Path, nursery: trio.Nursery) -> None:
    """Through the filesystem core on ``swift:``: an empty container is found by name on
    a fresh mount (it lists as nothing), and renames move containers, into and out of
    other containers, keeping their mode."""
    from storefs.backends.retrying import RetryingBackend
    from storefs.fs.filesystem import AttrChanges
    from storefs.fs.inodes import ROOT_INO
    from tests.fs._util import start_fs

    names = [f"mv-{uuid.uuid4().hex[:10]}" for _ in range(3)]
    a, b, c = names
    sdk = sdk_connection(swift_server, OTHER)
    try:
        first = await start_fs(RetryingBackend(swift_backend(swift_server, "", user=OTHER)),
                               tmp_path / "first", nursery)
        made = await first.mkdir(ROOT_INO, a, 0o750, 0, 0)
        first.remember(made)
        fresh = await start_fs(RetryingBackend(swift_backend(swift_server, "", user=OTHER)),
                               tmp_path / "fresh", nursery)
        found = await fresh.lookup(ROOT_INO, a)
        assert found is not None and found.attr.mode == 0o40750  # empty, yet there
        fresh.remember(found)
        await fresh.setattr(found.ino, AttrChanges(mode=0o700))
        h, f = await fresh.create(found.ino, "file", 0o644, os.O_WRONLY | os.O_CREAT, 0, 0)
        fresh.remember(f)
        await fresh.write(h.fh, 0, b"inside")
        await fresh.flush(h.fh)
        await fresh.release(h.fh)
        await fresh.rename(ROOT_INO, a, ROOT_INO, b, 0)  # container -> new container
        headers = await trio.to_thread.run_sync(sdk.head_container, b)
        assert headers["x-container-meta-mode"] == str(0o40700)
        assert await trio.to_thread.run_sync(lambda: sdk.get_object(b, "file")[1]) == b"inside"
        with pytest.raises(Exception, match="404"):
            await trio.to_thread.run_sync(sdk.head_container, a)  # the old one is gone
        made_c = await fresh.mkdir(ROOT_INO, c, 0o755, 0, 0)
        fresh.remember(made_c)
        await fresh.rename(ROOT_INO, b, made_c.ino, "sub", 0)  # container -> directory
        assert await trio.to_thread.run_sync(
            lambda: sdk.get_object(c, "sub/file")[1]) == b"inside"
        sub = await fresh.lookup(made_c.ino, "sub")
        assert sub is not None
        fresh.remember(sub)
        await fresh.rename(made_c.ino, "sub", ROOT_INO, a, 0)  # directory -> container
        assert await trio.to_thread.run_sync(lambda: sdk.get_object(a, "file")[1]) == b"inside"
        _, objects = await trio.to_thread.run_sync(sdk.get_container, c)
        assert objects == []  # nothing left below the old name, not even its marker
    finally:
        for n in names:
            await trio.to_thread.run_sync(lambda n=n: drop_container(swift_server, n, OTHER))
