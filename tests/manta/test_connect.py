"""Every way the credentials can be wrong gives one line naming the cause, before mounting."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from storefs.errors import AuthError, ConfigError, ConnectError, NotFound, StorefsError
from tests.manta.conftest import MakeBackend
from tests.servers._shared import free_port
from tests.servers.fixture_manta import MantaServer


async def connect_error(make_backend: MakeBackend, base: str, options: dict[str, str],
                        **kwargs: object) -> StorefsError:
    with pytest.raises(StorefsError) as info:
        async with make_backend(base, options, **kwargs):
            pass
    message = str(info.value)
    assert "\n" not in message and "PRIVATE KEY" not in message and "Traceback" not in message
    return info.value


async def test_wrong_key(make_backend: MakeBackend, manta_server: MantaServer) -> None:
    md5 = manta_server.keys["stranger"]["md5"]
    err = await connect_error(make_backend, "/jill/stor", manta_server.options("stranger"))
    assert isinstance(err, AuthError)
    assert str(err) == f"manta: key {md5} is not registered for user jill (KeyDoesNotExist)"


async def test_unknown_user(make_backend: MakeBackend, manta_server: MantaServer) -> None:
    err = await connect_error(make_backend, "/jill/stor",
                              manta_server.options(user="nobody"))
    assert isinstance(err, AuthError)
    assert str(err) == (f"manta: user nobody does not exist at {manta_server.url} "
                        "(AccountDoesNotExist)")


async def test_unknown_subuser(make_backend: MakeBackend, manta_server: MantaServer) -> None:
    err = await connect_error(make_backend, "/jill/stor",
                              manta_server.options("bob", subuser="carol"))
    assert str(err) == "manta: sub-user carol does not exist in account jill (UserDoesNotExist)"


async def test_invalid_role(make_backend: MakeBackend, manta_server: MantaServer) -> None:
    err = await connect_error(make_backend, "/jill/stor",
                              manta_server.options("bob", subuser="bob", role="admin"))
    assert str(err) == "manta: role admin is not a role of jill/bob (InvalidRole)"


async def test_missing_key_file(make_backend: MakeBackend, manta_server: MantaServer,
                                tmp_path: Path) -> None:
    missing = tmp_path / "id_missing"
    err = await connect_error(make_backend, "/jill/stor",
                              {"url": manta_server.url, "key_file": str(missing)})
    assert isinstance(err, ConfigError)
    assert str(err) == f"manta: key file {missing} does not exist"


async def test_key_id_not_found(make_backend: MakeBackend, manta_server: MantaServer,
                                no_agent: None) -> None:
    sha = manta_server.keys["rsa"]["sha256"]
    err = await connect_error(make_backend, "/jill/stor",
                              {"url": manta_server.url, "key_id": sha})
    assert isinstance(err, ConfigError)
    assert str(err).startswith(f"manta: key {sha} is neither in ssh-agent nor in ")


async def test_unreachable_endpoint(make_backend: MakeBackend, manta_server: MantaServer) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    err = await connect_error(make_backend, "/jill/stor", manta_server.options(url=url))
    assert isinstance(err, ConnectError)
    assert str(err).startswith(f"manta: cannot reach {url}: ")


async def test_untrusted_tls_certificate(make_backend: MakeBackend,
                                         manta_tls_server: MantaServer) -> None:
    err = await connect_error(make_backend, "/jill/stor", manta_tls_server.options())
    assert isinstance(err, ConnectError)
    assert str(err).startswith(f"manta: the TLS certificate of {manta_tls_server.url} is not "
                               "trusted (")
    assert "MANTA_TLS_INSECURE=1" in str(err)
    # the user's explicit choice makes it work
    async with make_backend("/jill/stor", manta_tls_server.options(tls_insecure="true")) as b:
        assert (await b.head("")).is_dir


@pytest.mark.parametrize(("offset", "side", "code"), [
    (3600, "ahead of", "InvalidHeader"), (-3600, "behind", "RequestExpired"),
])
async def test_clock_skew(make_backend: MakeBackend, manta_server: MantaServer, offset: int,
                          side: str, code: str) -> None:
    err = await connect_error(make_backend, "/jill/stor", manta_server.options(),
                              clock=lambda: time.time() + offset)
    assert isinstance(err, AuthError)
    message = str(err)
    assert message.startswith("manta: this machine's clock is ")
    seconds = int(message.split("clock is ")[1].split("s ")[0])
    assert abs(seconds - abs(offset)) <= 5
    assert f"s {side} the server's" in message and message.endswith(f"({code})")


async def test_missing_directory(make_backend: MakeBackend, manta_server: MantaServer) -> None:
    err = await connect_error(make_backend, "/jill/stor/no/such/dir", manta_server.options())
    assert isinstance(err, NotFound)
    assert str(err) == "manta: /jill/stor/no/such/dir does not exist"


async def test_no_endpoint_is_a_config_error() -> None:
    from storefs.backends.manta import settings_from
    from storefs.source import parse_source

    with pytest.raises(ConfigError, match="no endpoint: set MANTA_URL"):
        settings_from(parse_source("manta:/jill/stor"), {}, environ={}, section={})
    s = settings_from(parse_source("manta:/jill/stor/a"), {},
                      environ={"MANTA_URL": "https://m.test/", "MANTA_USER": "jack",
                               "MANTA_KEY_ID": "SHA256:x", "MANTA_SUBUSER": "bob",
                               "MANTA_ROLE": "ops", "MANTA_TLS_INSECURE": "1"},
                      section={"user": "ignored", "role": "from-file"})
    assert (s.url, s.user, s.key_id, s.subuser, s.role, s.tls_insecure, s.base) == \
        ("https://m.test", "jack", "SHA256:x", "bob", "ops", True, "/jill/stor/a")
    # -o beats the environment, which beats the config file
    s = settings_from(parse_source("manta://h.test/jill/public"), {"role": "cli"},
                      environ={"MANTA_ROLE": "env"}, section={"subuser": "file-user"})
    assert (s.url, s.role, s.subuser, s.user) == ("https://h.test", "cli", "file-user", "jill")
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        settings_from(parse_source("manta:/jill/stor"), {"colour": "x", "url": "http://a"},
                      environ={}, section={})
