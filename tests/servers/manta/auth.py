"""HTTP Signature verification as muskie does it (manta-protocol.md §1), strictly.

The order of the checks follows muskie's handler chain, so each failure gets the code a real
server gives: header syntax (InvalidHeader), scheme (AuthorizationSchemeNotAllowed), the
http-signature parser's algorithm list (InvalidHeader), muskie's allow-list
(InvalidAlgorithm), Date age (RequestExpired) then skew (InvalidHeader), keyId shape
(InvalidKeyId), account / sub-user / key lookup, the signature itself, and roles.

RBAC is simplified: a role is a list of allowed actions (``getobject``, ``putobject``,
``putdirectory``, ``getdirectory``, ``deleteobject``, ``deletedirectory``,
``putsnaplink``, or ``*``); a sub-user may act when one of its active roles allows the
action.  Role tags are stored and returned but do not take part in the decision.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

from tests.servers.manta.errors import MantaError

#: what the http-signature 1.3 parser accepts (its hash list has no sha384)
_PARSER_HASHES = {"sha1", "sha256", "sha512"}
_PARSER_FAMILIES = {"rsa", "dsa", "ecdsa", "hmac"}
#: muskie's own allow-list, checked after the parser
_ALLOWED = {"rsa-sha1", "rsa-sha256", "rsa-sha384", "rsa-sha512", "dsa-sha1", "dsa-sha256",
            "ecdsa-sha256", "ecdsa-sha384", "ecdsa-sha512"}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha512": hashes.SHA512,
}
_PARAM_RE = re.compile(r'([A-Za-z]+)="([^"]*)"')


def md5_fingerprint(openssh_line: str) -> str:
    """``aa:bb:...`` of an OpenSSH public key line, as UFDS stores it."""
    blob = base64.b64decode(openssh_line.split()[1])
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


@dataclass
class User:
    keys: dict[str, Any]  # MD5 fingerprint -> public key
    roles: set[str] = field(default_factory=set)
    default_roles: set[str] = field(default_factory=set)


@dataclass
class Account:
    login: str
    keys: dict[str, Any]
    users: dict[str, User]
    roles: dict[str, set[str]]  # role -> allowed actions
    blocked: bool = False


@dataclass(frozen=True)
class Principal:
    """Who makes a request: ``account`` None means anonymous."""

    account: str | None
    user: str | None = None
    roles: frozenset[str] = frozenset()

    @property
    def anonymous(self) -> bool:
        return self.account is None


ANONYMOUS = Principal(None)


def _load_keys(lines: list[str]) -> dict[str, Any]:
    return {md5_fingerprint(line): serialization.load_ssh_public_key(line.encode())
            for line in lines}


def load_accounts(config: dict[str, Any]) -> dict[str, Account]:
    """Accounts from the JSON the fixture writes (see tests/servers/fixture_manta.py)."""
    out: dict[str, Account] = {}
    for login, acct in config.get("accounts", {}).items():
        users = {
            name: User(_load_keys(u.get("keys", [])), set(u.get("roles", [])),
                       set(u.get("default_roles", [])))
            for name, u in acct.get("users", {}).items()
        }
        roles = {name: set(actions) for name, actions in acct.get("roles", {}).items()}
        out[login] = Account(login, _load_keys(acct.get("keys", [])), users, roles,
                             bool(acct.get("blocked", False)))
    return out


def parse_authorization(value: str) -> tuple[str, dict[str, str]]:
    """``(scheme, params)``; raises InvalidHeader / AuthorizationSchemeNotAllowed."""
    scheme, sep, creds = value.partition(" ")
    if not sep or not scheme or not creds:
        raise MantaError("InvalidHeader", "Authorization header is invalid")
    if scheme not in ("Signature", "Token"):
        raise MantaError("AuthorizationSchemeNotAllowed",
                         f"{scheme} authorization scheme is not allowed")
    if scheme == "Token":
        raise MantaError("InvalidHeader", "token authorization is not supported here")
    params: dict[str, str] = {}
    # strict name="value" pairs separated by commas; spaces after a comma are tolerated
    # (the test server is a little kinder than http-signature 1.3.2 here, see §9)
    for piece in creds.split(","):
        m = _PARAM_RE.fullmatch(piece.lstrip(" "))
        if m is None:
            raise MantaError("InvalidHeader",
                             "Invalid Signature Authorization header: bad param format")
        params[m.group(1)] = m.group(2)
    for required in ("keyId", "algorithm", "signature"):
        if required not in params:
            raise MantaError("InvalidHeader",
                             f"Invalid Signature Authorization header: {required} was not "
                             "specified")
    return scheme, params


class Verifier:
    """Authenticates requests against the accounts; skew limits in seconds."""

    def __init__(self, accounts: dict[str, Account], *, max_request_age: float = 300.0,
                 clock_skew: float = 300.0) -> None:
        self.accounts = accounts
        self.max_request_age = max_request_age
        self.clock_skew = clock_skew

    def authenticate(self, method: str, target: str, version: str,
                     headers: dict[str, str]) -> Principal:
        """``headers`` lower-cased; ``target`` is the request URL with its query."""
        value = headers.get("authorization")
        if value is None:
            return ANONYMOUS
        _, params = parse_authorization(value)
        alg = params["algorithm"].lower()
        family, _, hash_name = alg.partition("-")
        if family not in _PARSER_FAMILIES or hash_name not in _PARSER_HASHES:
            raise MantaError("InvalidHeader",
                             f"Invalid Signature Authorization header: {alg} is not a "
                             "supported algorithm")
        if alg not in _ALLOWED:
            raise MantaError("InvalidAlgorithm",
                             f"{alg} is not a supported signing algorithm")
        date_name = "x-date" if "x-date" in headers else "date"
        signed = (params.get("headers") or date_name).lower().split()
        if "date" not in signed and "x-date" not in signed:
            raise MantaError("InvalidHeader",
                             "Invalid Signature Authorization header: date was not in the "
                             "signed headers")
        lines = []
        for name in signed:
            if name == "(request-target)":
                lines.append(f"(request-target): {method.lower()} {target}")
            elif name == "request-line":
                lines.append(f"{method} {target} {version}")
            elif name in headers:
                lines.append(f"{name}: {headers[name]}")
            else:
                raise MantaError("InvalidHeader",
                                 f"Invalid Signature Authorization header: {name} was not in "
                                 "the request")
        self._check_date(headers.get("x-date") or headers.get("date"))
        account, user, key = self._lookup(params["keyId"])
        if not _verify(key, family, hash_name, "\n".join(lines).encode(),
                       params["signature"]):
            raise MantaError("InvalidSignature", "The signature we calculated does not "
                             "match the one you sent")
        if account.blocked:
            raise MantaError("AccountBlocked", f"{account.login} is not approved")
        return Principal(account.login, user, self._roles(account, user, headers.get("role")))

    def _check_date(self, value: str | None) -> None:
        if value is None:
            raise MantaError("InvalidHeader",
                             "Invalid Signature Authorization header: no date header")
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError) as exc:
            raise MantaError("InvalidHeader", f"Date header {value!r} is invalid") from exc
        now = time.time()
        if now - when > self.max_request_age:
            raise MantaError("RequestExpired",
                             f"Request expired: Date header was {now - when:.0f}s old")
        skew = abs(now - when)
        if skew > self.clock_skew:
            raise MantaError("InvalidHeader",
                             "Invalid Signature Authorization header: clock skew of "
                             f"{skew:.0f}s was greater than {self.clock_skew:.0f}s")

    def _lookup(self, key_id: str) -> tuple[Account, str | None, Any]:
        parts = [urllib.parse.unquote(p) for p in key_id.split("/")]
        if len(parts) == 4 and parts[0] == "" and parts[2] == "keys":
            login, user, fp = parts[1], None, parts[3]
        elif len(parts) == 5 and parts[0] == "" and parts[3] == "keys":
            login, user, fp = parts[1], parts[2], parts[4]
        else:
            raise MantaError("InvalidKeyId", f"{key_id} is not a valid KeyId")
        account = self.accounts.get(login)
        if account is None:
            raise MantaError("AccountDoesNotExist", f"{login} does not exist")
        if user is None:
            keys = account.keys
        else:
            if user not in account.users:
                raise MantaError("UserDoesNotExist", f"{login}/{user} does not exist")
            keys = account.users[user].keys
        if fp not in keys:
            raise MantaError("KeyDoesNotExist", f"{key_id.rsplit('/', 1)[0]}/{fp} does not "
                             "exist")
        return account, user, keys[fp]

    @staticmethod
    def _roles(account: Account, user: str | None, header: str | None) -> frozenset[str]:
        if user is None:
            return frozenset()
        u = account.users[user]
        if header is None:
            return frozenset(u.default_roles)
        names = {r.strip() for r in header.split(",") if r.strip()}
        if "*" in names:
            return frozenset(u.roles)
        for name in sorted(names):
            if name not in account.roles or name not in u.roles:
                raise MantaError("InvalidRole", f"Role {name} is invalid")
        return frozenset(names)

    def authorize(self, principal: Principal, login: str, action: str, path: str) -> None:
        """Raise AuthorizationFailed unless ``principal`` may do ``action`` on ``path``."""
        if principal.anonymous:
            raise MantaError("AuthorizationFailed",
                             f"anonymous is not allowed to access {path}")
        if principal.account != login:
            raise MantaError("AuthorizationFailed",
                             f"{principal.account} is not allowed to access {path}")
        if principal.user is None:
            return
        allowed = self.accounts[login].roles
        if not any(action in allowed[r] or "*" in allowed[r] for r in principal.roles):
            raise MantaError("AuthorizationFailed",
                             f"{login}/{principal.user} is not allowed to access {path}")


def _verify(key: Any, family: str, hash_name: str, data: bytes, signature: str) -> bool:
    try:
        sig = base64.b64decode(signature, validate=True)
    except ValueError:
        return False
    algorithm = _HASHES[hash_name]()
    try:
        if family == "rsa" and isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, data, padding.PKCS1v15(), algorithm)
        elif family == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, data, ec.ECDSA(algorithm))
        elif family == "dsa" and isinstance(key, dsa.DSAPublicKey):
            key.verify(sig, data, algorithm)
        else:
            # hmac-* parses but never verifies; a family that is not the key's fails too
            return False
    except InvalidSignature:
        return False
    return True
