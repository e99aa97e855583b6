"""Keystone v3 credentials against a real Keystone in front of a real Swift.

Marked ``keystone``: the ``keystone_swift`` fixture needs Debian's python3-keystone
(``scripts/install-test-servers.sh --keystone``) and takes about 15 s to start.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

import pytest
import trio

from storefs.backends.swift import SwiftBackend, open_backend
from storefs.errors import AuthError, ConfigError
from storefs.source import parse_source

pytestmark = pytest.mark.keystone


def rc_file(info: dict[str, Any], **override: str) -> dict[str, str]:
    """The variables an OpenStack RC file v3 for the test project sets."""
    env = {"OS_AUTH_URL": info["auth_url"], "OS_IDENTITY_API_VERSION": "3",
           "OS_USERNAME": info["username"], "OS_PASSWORD": info["password"],
           "OS_USER_DOMAIN_NAME": info["user_domain_name"],
           "OS_PROJECT_NAME": info["project_name"],
           "OS_PROJECT_DOMAIN_NAME": info["project_domain_name"],
           "OS_REGION_NAME": info["region"], "OS_INTERFACE": "public"}
    env.update(override)
    return env


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("OS_", "ST_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STOREFS_CONFIG", "")
    for k, v in env.items():
        monkeypatch.setenv(k, v)


async def round_trip(backend: SwiftBackend) -> None:
    await backend.connect()
    try:
        name = f"ks-{uuid.uuid4().hex[:10]}"
        await backend.make_dir(f"{name}/", {})
        await backend.put(f"{name}/hello", b"through keystone", {"mtime": "1"})
        assert await backend.get_range(f"{name}/hello", 0, 100) == b"through keystone"
        await backend.delete(f"{name}/hello")
        await backend.remove_dir(f"{name}/")
    finally:
        await backend.aclose()


async def test_openstack_rc_password_auth(keystone_swift: dict[str, Any],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    use_env(monkeypatch, rc_file(keystone_swift))
    backend = open_backend(parse_source("swift:"), {})
    await round_trip(backend)
    # the token went to Swift for the project's account from the service catalog
    assert backend._token is not None
    assert backend._token[0] == keystone_swift["storage_url"]


def make_application_credential(info: dict[str, Any]) -> tuple[str, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "id": info["user_id"], "password": info["password"]}}},
        "scope": {"project": {"id": info["project_id"]}}}}
    req = urllib.request.Request(f"{info['auth_url']}/auth/tokens", method="POST",
                                 data=json.dumps(auth).encode(),
                                 headers={"Content-Type": "application/json"})
    with opener.open(req, timeout=30) as r:
        token = r.headers["X-Subject-Token"]
    body = {"application_credential": {"name": f"storefs-{uuid.uuid4().hex[:8]}"}}
    req = urllib.request.Request(
        f"{info['auth_url']}/users/{info['user_id']}/application_credentials", method="POST",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Auth-Token": token})
    with opener.open(req, timeout=30) as r:
        cred = json.loads(r.read())["application_credential"]
    return cred["id"], cred["secret"]


async def test_application_credentials(keystone_swift: dict[str, Any],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cred_id, secret = await trio.to_thread.run_sync(make_application_credential,
                                                    keystone_swift)
    use_env(monkeypatch, {"OS_AUTH_URL": keystone_swift["auth_url"],
                          "OS_AUTH_TYPE": "v3applicationcredential",
                          "OS_APPLICATION_CREDENTIAL_ID": cred_id,
                          "OS_APPLICATION_CREDENTIAL_SECRET": secret,
                          "OS_REGION_NAME": keystone_swift["region"]})
    await round_trip(open_backend(parse_source("swift:"), {}))


async def test_wrong_password(keystone_swift: dict[str, Any],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    use_env(monkeypatch, rc_file(keystone_swift, OS_PASSWORD="wrong"))
    backend = open_backend(parse_source("swift:"), {})
    with pytest.raises(AuthError) as err:
        await backend.connect()
    text = str(err.value)
    assert text == f"swift: credentials refused by {keystone_swift['auth_url']}"
    assert "wrong" not in text


async def test_region_without_object_store(keystone_swift: dict[str, Any],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    use_env(monkeypatch, rc_file(keystone_swift, OS_REGION_NAME="Atlantis"))
    backend = open_backend(parse_source("swift:"), {})
    with pytest.raises(ConfigError) as err:
        await backend.connect()
    assert str(err.value) == ("swift: no object-store endpoint in the service catalog "
                              "(check the region and interface)")
