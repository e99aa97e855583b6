"""Manta credentials: SSH keys (ssh-agent or files), fingerprints, HTTP Signature auth.

Manta authenticates every request with an HTTP Signature over the ``Date`` header
(manta-protocol.md §1): ``Authorization: Signature keyId="/LOGIN/keys/MD5",
algorithm="rsa-sha256",headers="date",signature="..."``.  The keyId must name the key by
its MD5 fingerprint in colon-hex; users may give ``MANTA_KEY_ID`` as MD5 or SHA256 (the
two forms ``ssh-keygen -l`` prints) and ``find_key`` finds the key either way, so the
request always carries the MD5 form.

Where keys come from, in order: an explicit key file (``key_file=``; a passphrase-protected
file is used through ssh-agent, which must hold it), else the key whose fingerprint is
``key_id`` in ssh-agent, then among ``~/.ssh/*.pub`` and their private halves, else (no
key id at all) the first RSA/ECDSA key in the agent, then ``~/.ssh/id_rsa`` or
``~/.ssh/id_ecdsa``.

Algorithms: RSA signs ``rsa-sha256``; ECDSA signs with the hash its curve implies,
``ecdsa-sha256`` (P-256) or ``ecdsa-sha512`` (P-521).  P-384 would need ``ecdsa-sha384``,
which Manta's http-signature refuses, and Manta has no ed25519 or DSA support worth
having, so those keys are refused up front with a message saying so.

Secrets: private key material and passphrases never appear in messages or logs; only paths
and fingerprints do.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import logging
import os
import re
import struct
import threading
import time
import urllib.parse
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from storefs.errors import AuthError, ConfigError

log = logging.getLogger(__name__)

#: curve -> (http-signature algorithm, hash)
_EC_ALGORITHMS: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    "secp256r1": ("ecdsa-sha256", hashes.SHA256),
    "secp521r1": ("ecdsa-sha512", hashes.SHA512),
}
_SSH_EC_NAMES = {"ecdsa-sha2-nistp256": "ecdsa-sha256", "ecdsa-sha2-nistp521": "ecdsa-sha512"}
_MD5_RE = re.compile(r"^([0-9a-f]{2}:){15}[0-9a-f]{2}$")
_OPENSSH_MAGIC = b"openssh-key-v1\x00"


# -- fingerprints ----------------------------------------------------------------------


def md5_fingerprint(blob: bytes) -> str:
    """``aa:bb:...:ff``: the form Manta's keyId needs (``ssh-keygen -l -E md5`` sans MD5:)."""
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def sha256_fingerprint(blob: bytes) -> str:
    """``SHA256:base64`` without padding, as ``ssh-keygen -l`` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def normalise_key_id(key_id: str) -> str:
    """A fingerprint as the user typed it, canonical: ``aa:bb:..`` (MD5) or ``SHA256:..``.

    Accepts ``MD5:aa:bb:...``, ``aa:bb:...`` (any case) and ``SHA256:...`` (with or
    without ``=`` padding); raises ``ConfigError`` for anything else.
    """
    value = key_id.strip()
    if value.upper().startswith("MD5:"):
        value = value[4:]
    if _MD5_RE.match(value.lower()):
        return value.lower()
    if value.upper().startswith("SHA256:") and len(value) > 7:
        return "SHA256:" + value[7:].rstrip("=")
    raise ConfigError(
        f"manta: key id {key_id!r} is not a key fingerprint "
        "(expected MD5 aa:bb:... or SHA256:... as ssh-keygen -l prints it)"
    )


def fingerprint_matches(blob: bytes, key_id: str) -> bool:
    """Whether the public key ``blob`` has the (normalised) fingerprint ``key_id``."""
    if key_id.startswith("SHA256:"):
        return sha256_fingerprint(blob) == key_id
    return md5_fingerprint(blob) == key_id


# -- keys ------------------------------------------------------------------------------


class SigningKey:
    """A private key that can sign; ``blob`` is its public key in SSH wire form."""

    blob: bytes
    #: where the key came from, for messages ("ssh-agent", a path); never key material
    source: str
    #: signing blocks on a socket (the agent): run it in a thread
    blocking: bool = False

    @property
    def md5(self) -> str:
        return md5_fingerprint(self.blob)

    def sign(self, data: bytes) -> tuple[str, bytes]:
        """``(http-signature algorithm, signature bytes)`` over ``data``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the key holds open (the agent's socket)."""


def _public_blob(public: Any) -> bytes:
    line = public.public_bytes(serialization.Encoding.OpenSSH,
                               serialization.PublicFormat.OpenSSH)
    return base64.b64decode(line.split()[1])


class FileKey(SigningKey):
    """A private key loaded from a file with ``cryptography``."""

    def __init__(self, key: Any, path: Path) -> None:
        self._hash: type[hashes.HashAlgorithm]
        if isinstance(key, rsa.RSAPrivateKey):
            self._alg, self._hash = "rsa-sha256", hashes.SHA256
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            curve = key.curve.name
            if curve not in _EC_ALGORITHMS:
                raise ConfigError(f"manta: {path}: ECDSA curve {curve} is not usable with "
                                  "Manta (only P-256 and P-521; P-384 needs ecdsa-sha384, "
                                  "which Manta refuses)")
            self._alg, self._hash = _EC_ALGORITHMS[curve]
        else:
            raise ConfigError(f"manta: {path}: only RSA and ECDSA keys work with Manta")
        self._key = key
        self.blob = _public_blob(key.public_key())
        self.source = str(path)

    def sign(self, data: bytes) -> tuple[str, bytes]:
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._alg, self._key.sign(data, padding.PKCS1v15(), self._hash())
        return self._alg, self._key.sign(data, ec.ECDSA(self._hash()))


class _Reader:
    """SSH wire format: uint32-length-prefixed strings and mpints."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def string(self) -> bytes:
        if self.pos + 4 > len(self.data):
            raise ValueError("truncated SSH string")
        (n,) = struct.unpack(">I", self.data[self.pos:self.pos + 4])
        self.pos += 4
        if self.pos + n > len(self.data):
            raise ValueError("truncated SSH string")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def mpint(self) -> int:
        return int.from_bytes(self.string(), "big", signed=True)


class AgentKey(SigningKey):
    """A key held by ssh-agent, used through ``paramiko.Agent`` (blocking socket I/O)."""

    blocking = True

    def __init__(self, agent_key: Any, agent: AgentSession | None = None) -> None:
        self._key = agent_key
        self._agent = agent
        self.blob = bytes(agent_key.asbytes())
        self.name = agent_key.get_name()
        self.source = "ssh-agent"
        if self.name != "ssh-rsa" and self.name not in _SSH_EC_NAMES:
            raise ConfigError(f"manta: agent key {self.md5} is {self.name}; only RSA and "
                              "ECDSA P-256/P-521 keys work with Manta")
        # paramiko's agent connection is one socket: one request at a time
        self._lock = threading.Lock()

    def sign(self, data: bytes) -> tuple[str, bytes]:
        with self._lock:
            algorithm = "rsa-sha2-256" if self.name == "ssh-rsa" else None
            raw = self._key.sign_ssh_data(data, algorithm)
        reader = _Reader(bytes(raw))
        kind = reader.string().decode()
        sig = reader.string()
        if kind == "rsa-sha2-256":
            return "rsa-sha256", sig
        if kind == "ssh-rsa":
            # an old agent that ignores the SHA-2 flag: Manta still accepts rsa-sha1
            return "rsa-sha1", sig
        if kind in _SSH_EC_NAMES:
            inner = _Reader(sig)
            r, s = inner.mpint(), inner.mpint()
            return _SSH_EC_NAMES[kind], encode_dss_signature(r, s)
        raise AuthError(f"manta: ssh-agent signed with unexpected algorithm {kind}")

    def close(self) -> None:
        if self._agent is not None:
            self._agent.close()


class AgentSession:
    """A connection to ssh-agent (``$SSH_AUTH_SOCK``) and the keys it holds; no keys when
    there is no reachable agent.  Closed by whoever does not keep one of its keys."""

    def __init__(self) -> None:
        self.keys: list[Any] = []
        self._agent: Any = None
        if not os.environ.get("SSH_AUTH_SOCK"):
            return
        import paramiko

        try:
            self._agent = paramiko.Agent()
            self.keys = list(self._agent.get_keys())
        except (paramiko.SSHException, OSError) as exc:
            log.debug("ssh-agent not usable: %s", exc)
            self.close()

    def close(self) -> None:
        if self._agent is not None:
            self._agent.close()
            self._agent = None

    def find(self, match: Callable[[bytes], bool]) -> AgentKey | None:
        for k in self.keys:
            if match(bytes(k.asbytes())):
                return AgentKey(k, self)
        return None


class EncryptedKeyError(Exception):
    """The key file needs a passphrase; ``blob`` is its public key when it can be told."""

    def __init__(self, path: Path, blob: bytes | None) -> None:
        super().__init__(str(path))
        self.path = path
        self.blob = blob


def _openssh_public_blob(data: bytes) -> bytes | None:
    """The public key stored in clear inside an (encrypted) OpenSSH private key file."""
    try:
        text = data.decode("ascii")
        b64 = "".join(line for line in text.splitlines() if not line.startswith("-----"))
        raw = base64.b64decode(b64)
        if not raw.startswith(_OPENSSH_MAGIC):
            return None
        reader = _Reader(raw[len(_OPENSSH_MAGIC):])
        reader.string()  # cipher
        reader.string()  # kdf
        reader.string()  # kdf options
        reader.pos += 4  # number of keys
        return reader.string()
    except (ValueError, UnicodeDecodeError):
        return None


def _pub_file_blob(path: Path) -> bytes | None:
    try:
        fields = path.read_text().split()
        return base64.b64decode(fields[1]) if len(fields) >= 2 else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def load_key_file(path: Path) -> FileKey:
    """Load an RSA or ECDSA private key, OpenSSH or PEM (PKCS#1, SEC1, PKCS#8).

    Raises ``ConfigError`` (missing, unreadable or not a key) or ``EncryptedKeyError``.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"manta: key file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"manta: cannot read key file {path}: {exc.strerror}") from None
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            key: Any = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # "Password was not given but private key is encrypted"
        blob = _openssh_public_blob(data) or _pub_file_blob(path.with_name(path.name + ".pub"))
        raise EncryptedKeyError(path, blob) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"manta: {path} is not an RSA or ECDSA private key in OpenSSH or "
                          "PEM format") from None
    return FileKey(key, path)


def _use_file(path: Path, agent: AgentSession) -> SigningKey:
    """The key in ``path``; through ssh-agent when the file needs a passphrase."""
    try:
        return load_key_file(path)
    except EncryptedKeyError as exc:
        if exc.blob is None:
            raise ConfigError(f"manta: key file {path} is protected by a passphrase and has "
                              f"no {path.name}.pub beside it; add it to ssh-agent "
                              f"(ssh-add {path})") from None
        public = exc.blob
        found = agent.find(lambda b: b == public)
        if found is None:
            raise AuthError(f"manta: key file {path} is protected by a passphrase and "
                            f"ssh-agent does not hold it; run: ssh-add {path}") from None
        return found


def find_key(key_id: str | None, key_file: str | None, ssh_dir: Path) -> SigningKey:
    """The signing key the settings name (see the module docstring for the order)."""
    wanted = normalise_key_id(key_id) if key_id else None
    agent = AgentSession()
    key: SigningKey | None = None
    try:
        key = _find(wanted, key_id, key_file, ssh_dir, agent)
        return key
    finally:
        if not isinstance(key, AgentKey):
            agent.close()


def _find(wanted: str | None, key_id: str | None, key_file: str | None, ssh_dir: Path,
          agent: AgentSession) -> SigningKey:
    if key_file:
        path = Path(key_file).expanduser()
        key = _use_file(path, agent)
        if wanted and not fingerprint_matches(key.blob, wanted):
            key.close()
            raise ConfigError(f"manta: key file {path} has fingerprint {key.md5}, not the "
                              f"key id {key_id}")
        return key
    if wanted:
        found = agent.find(lambda b: fingerprint_matches(b, wanted))
        if found is not None:
            return found
        for pub in _pub_files(ssh_dir):
            blob = _pub_file_blob(pub)
            if blob is not None and fingerprint_matches(blob, wanted):
                return _use_file(pub.with_suffix(""), agent)
        raise ConfigError(f"manta: key {key_id} is neither in ssh-agent nor in {ssh_dir} "
                          "(looked for a matching .pub file)")
    usable = agent.find(lambda b: _Reader(b).string().decode(errors="replace") in
                        ("ssh-rsa", *_SSH_EC_NAMES))
    if usable is not None:
        return usable
    for name in ("id_rsa", "id_ecdsa"):
        if (ssh_dir / name).exists():
            return _use_file(ssh_dir / name, agent)
    raise ConfigError("manta: no SSH key found: set MANTA_KEY_ID (or -o key_id=) to the "
                      "fingerprint of a key in ssh-agent or ~/.ssh, or give -o key_file=")


def _pub_files(ssh_dir: Path) -> list[Path]:
    try:
        return sorted(ssh_dir.glob("*.pub"))
    except OSError:
        return []


# -- HTTP Signature --------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who signs: the account login, and the sub-user and roles when acting as one."""

    login: str
    subuser: str | None = None
    roles: str | None = None


def key_id_path(principal: Principal, md5: str) -> str:
    """``/LOGIN/keys/MD5`` or ``/LOGIN/SUBUSER/keys/MD5`` (each part URL-encoded)."""
    parts = [principal.login] + ([principal.subuser] if principal.subuser else [])
    return "/" + "/".join(urllib.parse.quote(p, safe="") for p in parts) + f"/keys/{md5}"


def authorization(key_id: str, algorithm: str, signature: bytes) -> str:
    """The Authorization header value: no spaces after the commas (muskie is strict)."""
    sig = base64.b64encode(signature).decode()
    return (f'Signature keyId="{key_id}",algorithm="{algorithm}",headers="date",'
            f'signature="{sig}"')


class MantaAuth(httpx.Auth):
    """Signs each request's ``Date``; adds ``Role``.  One signature serves every request
    made within the same second (the Date has one-second resolution), so the agent is
    asked at most once a second."""

    def __init__(self, key: SigningKey, principal: Principal,
                 clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.principal = principal
        self.key_id = key_id_path(principal, key.md5)
        self.clock = clock
        self._cached: tuple[str, str] | None = None
        self.signatures = 0

    def _header(self, date: str) -> str | None:
        cached = self._cached
        return cached[1] if cached is not None and cached[0] == date else None

    def _sign(self, date: str) -> str:
        algorithm, sig = self.key.sign(f"date: {date}".encode())
        header = authorization(self.key_id, algorithm, sig)
        self._cached = (date, header)
        self.signatures += 1
        return header

    def _prepare(self, request: httpx.Request) -> str:
        date = email.utils.formatdate(self.clock(), usegmt=True)
        request.headers["Date"] = date
        if self.principal.roles:
            request.headers["Role"] = self.principal.roles
        return date

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request,
                                                                  httpx.Response, None]:
        date = self._prepare(request)
        request.headers["Authorization"] = self._header(date) or self._sign(date)
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request,
                                                                              httpx.Response]:
        date = self._prepare(request)
        header = self._header(date)
        if header is None:
            if self.key.blocking:
                header = await trio.to_thread.run_sync(self._sign, date)
            else:
                header = self._sign(date)
        request.headers["Authorization"] = header
        yield request
