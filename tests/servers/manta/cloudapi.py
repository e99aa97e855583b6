"""The Triton CloudAPI subset of the test server (manta-protocol.md §8), in memory.

Served on the same port as Manta: ``/--ping`` and ``/:login/{machines,datacenters,
packages,images,keys,users}/...``.  Authentication is the same HTTP Signature, reported
the CloudAPI way (every credential failure is ``401 InvalidCredentials``; sub-user keyIds
are ``/LOGIN/users/SUBUSER/keys/FP``).  Machines change state a moment after a
start/stop/reboot (``STATE_DELAY`` seconds), as the real service does asynchronously.
Keys are looked up by MD5 fingerprint (not by name).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization

from tests.servers.manta.auth import Principal, md5_fingerprint
from tests.servers.manta.errors import MantaError

if TYPE_CHECKING:
    from tests.servers.manta.server import Handler

AREAS = ("machines", "datacenters", "packages", "images", "keys", "users")
VERSIONS = ["7.0.0", "7.1.0", "7.2.0", "7.3.0", "8.0.0", "9.0.0"]
STATE_DELAY = 0.3
PROTECTED_METADATA = ("credentials", "administrator_pw", "root_authorized_keys")
_STATUS = {"ResourceNotFound": 404, "InvalidArgument": 409, "MissingParameter": 409,
           "InvalidCredentials": 401, "NotAuthorized": 403, "InvalidHeader": 400,
           "RequestExpired": 400, "InvalidVersion": 400, "ResourceMoved": 302,
           "MethodNotAllowed": 405}


def _err(code: str, message: str, headers: dict[str, str] | None = None) -> MantaError:
    return MantaError(code, message, headers, status=_STATUS[code])


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class CloudState:
    """Machines, packages, images and datacenters of one server (thread-safe)."""

    def __init__(self, login: str, base_url: str = "http://127.0.0.1") -> None:
        self.lock = threading.Lock()
        image = {"id": "2b683a82-a066-11e3-97ab-2faa44701c5a", "name": "base-64",
                 "version": "13.4.0", "os": "smartos", "type": "zone-dataset",
                 "requirements": {}, "files": [{"compression": "gzip", "sha1": "0" * 40,
                                                "size": 1024}],
                 "published_at": "2014-03-01T00:00:00Z", "owner": str(uuid.UUID(int=0)),
                 "public": True, "state": "active", "tags": {}}
        old = {**image, "id": "3c3a4c3e-0000-4000-8000-000000000001", "name": "base-old",
               "version": "1.0.0", "state": "disabled"}
        self.images = [image, old]
        self.packages = [
            {"id": str(uuid.UUID(int=i + 1)), "name": f"sdc_{mem}", "memory": mem,
             "disk": mem * 100, "swap": mem * 2, "vcpus": 1, "lwps": 4000, "version": "1.0.0",
             "group": "test", "description": f"{mem} MiB", "default": mem == 128,
             "brand": "joyent"}
            for i, mem in enumerate((128, 256, 1024))
        ]
        self.datacenters = {"us-test-1": base_url}
        self.machines: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, tuple[float, str]] = {}
        for name, state in (("web", "running"), ("db", "stopped"), ("old", "deleted")):
            mid = str(uuid.uuid4())
            self.machines[mid] = {
                "id": mid, "name": name, "type": "smartmachine", "brand": "joyent",
                "state": state, "image": image["id"], "memory": 128, "disk": 12800,
                "metadata": {"root_authorized_keys": "ssh-rsa AAAA test"},
                "tags": {"role": name}, "created": _now(), "updated": _now(),
                "ips": ["10.88.88.26"], "networks": [str(uuid.uuid4())],
                "primaryIp": "10.88.88.26",
                "nics": [{"ip": "10.88.88.26", "mac": "90:b8:d0:00:00:01", "primary": True,
                          "netmask": "255.255.255.0", "gateway": "10.88.88.1",
                          "network": str(uuid.uuid4())}],
                "firewall_enabled": False, "deletion_protection": False,
                "compute_node": str(uuid.uuid4()), "package": "sdc_128",
                "credentials": {"root": "secret"},
            }

    def machine(self, mid: str) -> dict[str, Any]:
        """The machine, with any due state change applied; 404 if unknown."""
        m = self.machines.get(mid)
        if m is None:
            raise _err("ResourceNotFound", f"VM {mid} not found")
        due = self.pending.get(mid)
        if due is not None and time.monotonic() >= due[0]:
            m["state"] = due[1]
            m["updated"] = _now()
            del self.pending[mid]
        return m


def _versions(h: Handler) -> None:
    wanted = h.h.get("accept-version") or h.h.get("x-api-version") or h.h.get("api-version")
    if not wanted or wanted.strip() == "*":
        return
    for alternative in wanted.split("||"):
        want = alternative.strip().lstrip("~^=v")
        major = want.split(".")[0]
        if any(v == want or v.startswith(want + ".") or v.split(".")[0] == major
               for v in VERSIONS):
            return
    raise _err("InvalidVersion", f"{wanted} is not a supported version")


def _authenticate(h: Handler) -> Principal:
    headers = dict(h.h)
    if "authorization" not in headers:
        raise _err("InvalidCredentials",
                   "You must make authenticated requests to use CloudAPI")
    # sub-user keyIds are /LOGIN/users/SUBUSER/keys/FP on CloudAPI, 5 parts on Manta
    auth = headers["authorization"]
    if 'keyId="' in auth:
        key_id = auth.split('keyId="', 1)[1].split('"', 1)[0]
        parts = key_id.split("/")
        if len(parts) == 6 and parts[2] == "users":
            headers["authorization"] = auth.replace(f'keyId="{key_id}"',
                                                    f'keyId="/{parts[1]}/{parts[3]}/keys/'
                                                    f'{parts[5]}"')
    try:
        return h.server.config.verifier.authenticate(h.command, h.path, h.request_version,
                                                     headers)
    except MantaError as exc:
        if exc.code in ("InvalidHeader", "RequestExpired"):
            raise
        raise _err("InvalidCredentials", exc.message) from exc


def _params(h: Handler) -> dict[str, Any]:
    """Query, JSON and form parameters merged (as restify's bodyParser does)."""
    out: dict[str, Any] = dict(h.query)
    assert h.body is not None
    raw = h.body.read_all() if h.body.present else b""
    if raw:
        ctype = h.h.get("content-type", "")
        if "json" in ctype:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise _err("InvalidArgument", "body is not JSON") from exc
            if isinstance(body, dict):
                out.update(body)
        else:
            out.update({k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode()).items()})
    return out


def _send(h: Handler, status: int, body: Any = None,
          headers: dict[str, str] | None = None) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    out = {"Content-Type": "application/json", "Api-Version": "9.0.0",
           "Access-Control-Allow-Origin": "*", **(headers or {})}
    if data:
        out["Content-MD5"] = base64.b64encode(hashlib.md5(data).digest()).decode()
    h.reply(status, out, data)


def handle(h: Handler, segs: list[str]) -> None:
    """A CloudAPI request (``segs``: decoded path segments after the host)."""
    h.op = "CloudAPI"
    _versions(h)
    if segs == ["--ping"]:
        _send(h, 200, {"ping": "pong", "cloudapi": {"versions": VERSIONS}})
        return
    principal = _authenticate(h)
    login = principal.account if segs[0] == "my" else segs[0]
    # RBAC, simplified: sub-users may read, only the account owner may change anything
    if login != principal.account or (principal.user is not None and h.command != "GET"):
        who = principal.account + (f"/{principal.user}" if principal.user else "")
        raise _err("NotAuthorized", f"{who} may not {h.command} {h.norm}")
    state = h.server.cloud_state(login)
    area, rest = segs[1], segs[2:]
    params = _params(h)
    with state.lock:
        if area == "machines":
            _machines(h, state, rest, params)
        elif area == "datacenters":
            _datacenters(h, state, rest)
        elif area == "packages":
            _lookup(h, state.packages, rest, params, ("name", "memory", "disk", "vcpus"))
        elif area == "images":
            # only active images by default; state=all lists every one
            wanted = params.pop("state", "active")
            images = [i for i in state.images if wanted in ("all", i["state"])]
            _lookup(h, images, rest, params,
                    ("name", "os", "version", "public", "owner", "type"))
        elif area == "keys":
            _keys(h, login, None, rest, params)
        elif area == "users" and len(rest) >= 2 and rest[1] == "keys":
            _keys(h, login, rest[0], rest[2:], params)
        else:
            raise _err("ResourceNotFound", f"{h.norm} does not exist")


def _machines(h: Handler, state: CloudState, rest: list[str], params: dict[str, Any]) -> None:
    method = h.command
    if not rest:
        if method not in ("GET", "HEAD"):
            raise _err("MethodNotAllowed", f"{method} is not allowed")
        found = [state.machine(mid) for mid in list(state.machines)]
        if params.get("tombstone") is None:
            found = [m for m in found if m["state"] != "deleted"]
        for key in ("name", "image", "state", "memory", "brand", "type"):
            if key in params:
                found = [m for m in found if str(m.get(key)) == str(params[key])]
        for key, value in params.items():
            if key.startswith("tag."):
                found = [m for m in found if str(m["tags"].get(key[4:])) == str(value)]
        if params.get("tags") == "*":
            found = [m for m in found if m["tags"]]
        total = len(found)
        limit = min(int(params.get("limit", 1000)), 1000)
        offset = int(params.get("offset", 0))
        page = [_public(m, params) for m in found[offset:offset + limit]]
        _send(h, 200, page, {"x-query-limit": str(limit), "x-resource-count": str(total)})
        return
    m = state.machine(rest[0])
    if m["state"] == "deleted":
        raise _Gone(_public(m, params))
    if len(rest) == 1:
        if method == "GET" or method == "HEAD":
            _send(h, 200, _public(m, params))
        elif method == "POST":
            _action(h, state, m, params)
        else:
            raise _err("MethodNotAllowed", f"{method} is not allowed")
        return
    what, key = rest[1], rest[2] if len(rest) > 2 else None
    if what == "metadata":
        _dict_route(h, m, "metadata", key, params, merge_only=True)
    elif what == "tags":
        _dict_route(h, m, "tags", key, params, merge_only=False)
    else:
        raise _err("ResourceNotFound", f"{h.norm} does not exist")


class _Gone(MantaError):
    """410 with the deleted machine as the body."""

    def __init__(self, machine: dict[str, Any]) -> None:
        super().__init__("ResourceNotFound", "gone", status=410)
        self.machine = machine


def _public(m: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in m.items() if k != "credentials"}
    if str(params.get("credentials")) == "true":
        out["credentials"] = m["credentials"]
    return out


def _action(h: Handler, state: CloudState, m: dict[str, Any], params: dict[str, Any]) -> None:
    action = params.get("action")
    if not action:
        raise _err("MissingParameter", "action is required")
    targets = {"start": "running", "stop": "stopped", "reboot": "running"}
    if action not in targets:
        raise _err("InvalidArgument", f"{action} is not a valid action")
    if action in ("stop", "reboot"):
        m["state"] = "stopping"
    state.pending[m["id"]] = (time.monotonic() + STATE_DELAY, targets[action])
    _send(h, 202)


def _dict_route(h: Handler, m: dict[str, Any], field: str, key: str | None,
                params: dict[str, Any], *, merge_only: bool) -> None:
    data: dict[str, Any] = m[field]
    method = h.command
    body = {k: v for k, v in params.items() if k not in ("credentials",)}
    if key is None:
        if method == "GET":
            shown = dict(data)
            if field == "metadata" and str(params.get("credentials")) == "true":
                shown["credentials"] = json.dumps(m["credentials"])
            _send(h, 200, shown)
        elif method == "POST" or (method == "PUT" and not merge_only):
            if method == "PUT":
                data.clear()
            data.update({k: (str(v) if field == "metadata" else v) for k, v in body.items()})
            _send(h, 200, data, {"x-job-uuid": str(uuid.uuid4())})
        elif method == "DELETE":
            kept = ("root_authorized_keys", "administrator_pw") if field == "metadata" else ()
            for k in [k for k in data if k not in kept]:
                del data[k]
            _send(h, 204)
        else:
            raise _err("MethodNotAllowed", f"{method} is not allowed")
        return
    if method == "GET":
        if key not in data:
            raise _err("ResourceNotFound", f"{key} is not a {field} key")
        _send(h, 200, data[key])
    elif method == "DELETE":
        if field == "metadata" and key in PROTECTED_METADATA:
            raise _err("InvalidArgument", f"{key} can not be deleted")
        data.pop(key, None)
        _send(h, 204)
    else:
        raise _err("MethodNotAllowed", f"{method} is not allowed")


def _datacenters(h: Handler, state: CloudState, rest: list[str]) -> None:
    name = next(iter(state.datacenters))
    if not rest:
        _send(h, 200, state.datacenters, {"Triton-Datacenter-Name": name})
        return
    url = state.datacenters.get(rest[0])
    if url is None:
        raise _err("ResourceNotFound", f"{rest[0]} is not an available datacenter")
    _send(h, 302, {"code": "ResourceMoved", "message": f"{url} is the datacenter {rest[0]}"},
          {"Location": url})


def _lookup(h: Handler, items: list[dict[str, Any]], rest: list[str], params: dict[str, Any],
            filters: tuple[str, ...]) -> None:
    if not rest:
        found = items
        for key in filters:
            if key in params:
                found = [i for i in found if str(i.get(key)).lower() == str(params[key]).lower()]
        _send(h, 200, found)
        return
    for item in items:
        if rest[0] in (item["id"], item.get("name")):
            _send(h, 200, item)
            return
    raise _err("ResourceNotFound", f"{rest[0]} not found")


def _keys(h: Handler, login: str, user: str | None, rest: list[str],
          params: dict[str, Any]) -> None:
    verifier = h.server.config.verifier
    account = verifier.accounts[login]
    if user is not None and user not in account.users:
        raise _err("ResourceNotFound", f"{login}/{user} does not exist")
    keys = account.users[user].keys if user else account.keys
    names: dict[str, str] = h.server.key_names.setdefault(f"{login}/{user}", {})

    def view(fp: str) -> dict[str, Any]:
        line = keys[fp].public_bytes(serialization.Encoding.OpenSSH,
                                     serialization.PublicFormat.OpenSSH).decode()
        return {"name": names.get(fp, fp), "fingerprint": fp, "key": line}

    def find(name: str) -> str:
        for fp in keys:
            if name in (fp, names.get(fp)):
                return fp
        raise _err("ResourceNotFound", f"{name} does not exist")

    if not rest:
        if h.command == "GET":
            _send(h, 200, [view(fp) for fp in keys])
        elif h.command == "POST":
            line = params.get("key")
            if not line:
                raise _err("MissingParameter", "key is required")
            try:
                public = serialization.load_ssh_public_key(str(line).encode())
                fp = md5_fingerprint(str(line))
            except (ValueError, IndexError) as exc:
                raise _err("InvalidArgument", "key is invalid") from exc
            if fp in keys:
                raise _err("InvalidArgument", f"key {fp} already exists")
            keys[fp] = public
            names[fp] = str(params.get("name") or fp)
            base = f"/{login}/users/{user}/keys" if user else f"/{login}/keys"
            _send(h, 201, view(fp), {"Location": f"{base}/{fp}"})
        else:
            raise _err("MethodNotAllowed", f"{h.command} is not allowed")
        return
    fp = find(rest[0])
    if h.command == "GET":
        _send(h, 200, view(fp))
    elif h.command == "DELETE":
        del keys[fp]
        names.pop(fp, None)
        _send(h, 204)
    else:
        raise _err("MethodNotAllowed", f"{h.command} is not allowed")


def send_error(h: Handler, err: MantaError) -> None:
    """CloudAPI's error reply (410 carries the deleted machine)."""
    if isinstance(err, _Gone):
        _send(h, 410, err.machine)
        return
    _send(h, err.status, {"code": err.code, "message": err.message}, err.headers)
