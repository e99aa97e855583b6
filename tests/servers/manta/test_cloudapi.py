"""The test server's CloudAPI subset against manta-protocol.md §8 (raw requests)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.servers.fixture_manta import MantaServer
from tests.servers.manta.testing import Raw, code


@pytest.fixture
def api(manta_v2_server: MantaServer) -> Iterator[Raw]:
    # the v2 instance: CloudAPI tests change machines, the v1 one is left to Manta tests
    r = Raw(manta_v2_server)
    yield r
    r.close()


def machines(api: Raw, **params: str) -> list[dict[str, Any]]:
    resp = api.request("GET", "/my/machines", params=params)
    assert resp.status_code == 200, resp.text
    out: list[dict[str, Any]] = resp.json()
    return out


def wait_state(api: Raw, mid: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m: dict[str, Any] = api.request("GET", f"/jill/machines/{mid}").json()
        if m["state"] == state:
            return m
        time.sleep(0.05)
    raise AssertionError(f"machine {mid} never became {state}")


def test_ping_versions_and_auth(api: Raw, manta_v2_server: MantaServer) -> None:
    ping = httpx.get(f"{manta_v2_server.url}/--ping")
    assert ping.json()["ping"] == "pong" and "9.0.0" in ping.json()["cloudapi"]["versions"]
    anon = httpx.get(f"{manta_v2_server.url}/jill/machines")
    assert (anon.status_code, code(anon)) == (401, "InvalidCredentials")
    assert anon.json()["message"] == "You must make authenticated requests to use CloudAPI"
    stranger = Raw(manta_v2_server, "stranger")
    try:
        refused = stranger.request("GET", "/my/machines")
        assert (refused.status_code, code(refused)) == (401, "InvalidCredentials")
    finally:
        stranger.close()
    skewed = api.request("GET", "/my/machines", auth=api.auth_headers(when=time.time() + 900))
    assert (skewed.status_code, code(skewed)) == (400, "InvalidHeader")
    for header in ("Accept-Version", "X-Api-Version", "Api-Version"):
        ok = api.request("GET", "/my/machines", headers={header: "~9||~8"})
        assert ok.status_code == 200 and ok.headers["api-version"] == "9.0.0"
    bad = api.request("GET", "/my/machines", headers={"Accept-Version": "~3"})
    assert (bad.status_code, code(bad)) == (400, "InvalidVersion")
    bob = Raw(manta_v2_server, "bob", user="bob", algorithm="ecdsa-sha512",
              key_id=f"/jill/users/bob/keys/{manta_v2_server.keys['bob']['md5']}")
    try:
        assert bob.request("GET", "/jill/machines").status_code == 200
        denied = bob.request("POST", "/jill/machines/x", params={"action": "stop"})
        assert (denied.status_code, code(denied)) == (403, "NotAuthorized")
    finally:
        bob.close()


def test_machines_actions_and_gone(api: Raw) -> None:
    listed = api.request("GET", "/my/machines")
    assert listed.headers["x-resource-count"] == str(len(listed.json()))
    assert listed.headers["x-query-limit"] == "1000"
    web = machines(api, name="web")[0]
    assert web["state"] == "running" and "credentials" not in web
    assert machines(api, **{"tag.role": "db"})[0]["name"] == "db"
    assert "credentials" in machines(api, name="web", credentials="true")[0]
    assert len(machines(api, limit="1")) == 1
    stop = api.request("POST", f"/my/machines/{web['id']}", params={"action": "stop"})
    assert stop.status_code == 202 and stop.content == b""
    assert wait_state(api, web["id"], "stopped")["state"] == "stopped"
    start = api.request("POST", f"/my/machines/{web['id']}", data={"action": "start"})
    assert start.status_code == 202
    wait_state(api, web["id"], "running")
    missing = api.request("POST", f"/my/machines/{web['id']}")
    assert (missing.status_code, code(missing)) == (409, "MissingParameter")
    assert missing.json()["message"] == "action is required"
    wrong = api.request("POST", f"/my/machines/{web['id']}", json={"action": "explode"})
    assert (wrong.status_code, code(wrong)) == (409, "InvalidArgument")
    old = machines(api, tombstone="true", state="deleted")[0]
    gone = api.request("GET", f"/my/machines/{old['id']}")
    assert gone.status_code == 410 and gone.json()["id"] == old["id"]
    assert api.request("POST", f"/my/machines/{old['id']}",
                       params={"action": "start"}).status_code == 410
    unknown = api.request("GET", "/my/machines/00000000-0000-0000-0000-000000000000")
    assert (unknown.status_code, code(unknown)) == (404, "ResourceNotFound")


def test_metadata_and_tags(api: Raw) -> None:
    mid = machines(api, name="db")[0]["id"]
    base = f"/my/machines/{mid}"
    merged = api.request("POST", f"{base}/metadata", json={"foo": "bar", "n": 1})
    assert merged.status_code == 200 and "x-job-uuid" in merged.headers
    assert merged.json()["foo"] == "bar" and "root_authorized_keys" in merged.json()
    assert api.request("PUT", f"{base}/metadata", json={"a": "b"}).status_code == 405
    assert api.request("GET", f"{base}/metadata/foo").json() == "bar"
    assert api.request("GET", f"{base}/metadata/nope").status_code == 404
    protected = api.request("DELETE", f"{base}/metadata/root_authorized_keys")
    assert (protected.status_code, code(protected)) == (409, "InvalidArgument")
    assert api.request("DELETE", f"{base}/metadata/foo").status_code == 204
    assert api.request("DELETE", f"{base}/metadata").status_code == 204
    assert list(api.request("GET", f"{base}/metadata").json()) == ["root_authorized_keys"]
    assert api.request("POST", f"{base}/tags", json={"env": "test"}).json() == \
        {"role": "db", "env": "test"}
    assert api.request("PUT", f"{base}/tags", json={"only": True}).json() == {"only": True}
    assert api.request("GET", f"{base}/tags/only").json() is True
    assert api.request("DELETE", f"{base}/tags/only").status_code == 204
    assert api.request("GET", f"{base}/tags").json() == {}


def test_datacenters_packages_images(api: Raw) -> None:
    dcs = api.request("GET", "/my/datacenters")
    assert dcs.headers["triton-datacenter-name"] in dcs.json()
    name = dcs.headers["triton-datacenter-name"]
    moved = api.request("GET", f"/my/datacenters/{name}")
    assert moved.status_code == 302 and code(moved) == "ResourceMoved"
    assert moved.headers["location"] == dcs.json()[name]
    assert api.request("GET", "/my/datacenters/mars-1").status_code == 404
    packages = api.request("GET", "/my/packages", params={"memory": "256"}).json()
    assert [p["name"] for p in packages] == ["sdc_256"]
    assert api.request("GET", "/my/packages/sdc_128").json()["memory"] == 128
    images = api.request("GET", "/my/images").json()
    assert [i["state"] for i in images] == ["active"]
    every = api.request("GET", "/my/images", params={"state": "all"}).json()
    assert sorted(i["state"] for i in every) == ["active", "disabled"]
    assert api.request("GET", f"/my/images/{images[0]['id']}").json()["name"] == "base-64"


def test_keys(api: Raw, manta_v2_server: MantaServer) -> None:
    listed = api.request("GET", "/my/keys").json()
    assert manta_v2_server.keys["rsa"]["md5"] in [k["fingerprint"] for k in listed]
    line = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    made = api.request("POST", "/my/keys", json={"name": "laptop", "key": line})
    assert made.status_code == 201
    fp = made.json()["fingerprint"]
    assert made.headers["location"] == f"/jill/keys/{fp}"
    assert api.request("GET", "/my/keys/laptop").json()["fingerprint"] == fp
    dup = api.request("POST", "/my/keys", json={"key": line})
    assert (dup.status_code, code(dup)) == (409, "InvalidArgument")
    assert code(api.request("POST", "/my/keys", json={"name": "x"})) == "MissingParameter"
    assert code(api.request("POST", "/my/keys", json={"key": "ssh-rsa nope"})) == \
        "InvalidArgument"
    assert api.request("DELETE", f"/my/keys/{fp}").status_code == 204
    assert api.request("GET", f"/my/keys/{fp}").status_code == 404
    bob_keys = api.request("GET", "/jill/users/bob/keys").json()
    assert [k["fingerprint"] for k in bob_keys] == [manta_v2_server.keys["bob"]["md5"]]
