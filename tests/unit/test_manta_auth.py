"""Manta credentials: signing vectors, fingerprints, key formats, key discovery.

The RSA vector below was checked independently with
``printf 'date: Tue, 09 Jan 2018 22:44:29 GMT' | openssl dgst -sha256 -sign key.pem``
and its fingerprints with ``ssh-keygen -l [-E md5]``.  The key is a test-only key.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from storefs.backends.manta_auth import (
    EncryptedKeyError,
    FileKey,
    MantaAuth,
    Principal,
    find_key,
    fingerprint_matches,
    load_key_file,
    md5_fingerprint,
    normalise_key_id,
    sha256_fingerprint,
)
from storefs.errors import AuthError, ConfigError

VECTOR_KEY = b"""-----BEGIN RSA PRIVATE KEY-----
MIICWwIBAAKBgQDEbEn/uef7clKIqdDa1Sd41/82MPixKrPAi1OjQNvKJP+58l5m
1YgN8B/+IsqICzk4Y76me5vTfXT8b5xzWDyGs0zyWVFX31fUupF1Mxq8zZRbql5y
08tj5QcVl3sGMPThDAoAFDFy8j35wEZAzHIygCaL/odCi8o8UnUSPnjgxQIDAQAB
AoGAFYT3pnirnbSsriRMqWzo4ihn4XwEAwT2pIWfKCeW7NKY4bpX9VQ3j69bEfCl
17nDDxZ+cKbiL41zH6TqswhbuQULnFXXH+XR0i8jpxVFwA0gTE2ktQ69ZZP05nFY
Jt/wfrnT9kXsOL/SV0n864kqrVOXr6KXGHIctQtKIu9uFZECQQDnDq31jt0s9Jlo
5lVp+VpNXcb+0abXY44KzVTd/HinxOty84cU8uZ+q5Dq5e3b+uKX182EY9wbKzg6
PL1W4GrPAkEA2aB7Y35japbcBATAe80xVmnfVTrWarRo/IIeD0ITKoLeRLRY+7uH
mdN5ppcI/RSIBKcNaBItffx2C/vsvMYQKwJAAXWoR6rVXtlUtsLtuzOmDGMRRL7S
TP4GAa92X8iegoDN8/Xx3oICTr6KtdEqBX+6OrdURwfSdiF5w3Rqxce5JQJAJteG
zkYzlkWgtTLn6/C+mo7A5qReuqLCjjbnCJAhfZfn9dk+fIeG90SQVNRmLU1pzXLH
aMi9x9u0cgUfxr2PCwJAVp72PSD1HkTOQ5WfUtACmwWyRerIo3IJOqbLdZdK4KIH
GAGnvO+0XeN6N2Q0U3OP3e22wwlOsjG9tllkUCzmUQ==
-----END RSA PRIVATE KEY-----
"""
VECTOR_MD5 = "47:e7:e3:1a:08:81:a2:be:04:96:7d:5a:ad:ca:d6:9a"
VECTOR_SHA256 = "SHA256:GHm1JS/VPIAzboScdR/cr3Iwl+D3ZaHCFBwvzJjg6sQ"
VECTOR_DATE = "Tue, 09 Jan 2018 22:44:29 GMT"
VECTOR_TIME = 1515537869.0
VECTOR_SIGNATURE = (
    "ZEriLkfiWSyo1pIVzIr0N+VTHc7hFfUtgv+trEpUFXxxXNTfVTIi/Z8I0ZKsV1bKb0psITuEiChljwrnD50DA5Om"
    "sXyYPJTbesn/zCnRc3BKyT2AGqyNqnpUxNjtgMYRqhTGzUTNzsBb+fuwOHMxNPFpXSaqOScdvmvEPJf+zuc="
)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def sign_request(auth: MantaAuth) -> httpx.Request:
    request = httpx.Request("GET", "http://manta.test/jill/stor")
    next(auth.sync_auth_flow(request))
    return request


def params(header: str) -> dict[str, str]:
    assert header.startswith("Signature ")
    out = {}
    for piece in header[len("Signature "):].split(","):
        name, _, value = piece.partition("=")
        out[name] = value.strip('"')
    return out


def openssh_pub(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


def test_rsa_signature_vector(tmp_path: Path) -> None:
    key = load_key_file(write(tmp_path / "k.pem", VECTOR_KEY))
    assert key.md5 == VECTOR_MD5
    request = sign_request(MantaAuth(key, Principal("jill"), clock=lambda: VECTOR_TIME))
    assert request.headers["Date"] == VECTOR_DATE
    assert request.headers["Authorization"] == (
        f'Signature keyId="/jill/keys/{VECTOR_MD5}",algorithm="rsa-sha256",'
        f'headers="date",signature="{VECTOR_SIGNATURE}"'
    )
    assert "Role" not in request.headers


@pytest.mark.parametrize(("curve", "algorithm", "digest"), [
    (ec.SECP256R1(), "ecdsa-sha256", hashes.SHA256()),
    (ec.SECP521R1(), "ecdsa-sha512", hashes.SHA512()),
])
def test_ecdsa_signs_with_the_hash_of_its_curve(
        tmp_path: Path, curve: ec.EllipticCurve, algorithm: str,
        digest: hashes.HashAlgorithm) -> None:
    private = ec.generate_private_key(curve)
    path = write(tmp_path / "k", private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))
    request = sign_request(MantaAuth(load_key_file(path), Principal("jill")))
    p = params(request.headers["Authorization"])
    assert p["algorithm"] == algorithm
    # DER SEQUENCE{r,s}, verified with the public key and the hash the name says
    private.public_key().verify(base64.b64decode(p["signature"]),
                                f"date: {request.headers['Date']}".encode(), ec.ECDSA(digest))


def test_subuser_key_id_and_role_header(tmp_path: Path) -> None:
    key = load_key_file(write(tmp_path / "k.pem", VECTOR_KEY))
    auth = MantaAuth(key, Principal("jill", "bob", "writer,reader"), clock=lambda: VECTOR_TIME)
    request = sign_request(auth)
    assert params(request.headers["Authorization"])["keyId"] == f"/jill/bob/keys/{VECTOR_MD5}"
    assert request.headers["Role"] == "writer,reader"
    # the signature covers only the date, whoever signs
    assert params(request.headers["Authorization"])["signature"] == VECTOR_SIGNATURE


def test_one_signature_per_second_of_date(tmp_path: Path) -> None:
    now = [VECTOR_TIME]
    auth = MantaAuth(load_key_file(write(tmp_path / "k.pem", VECTOR_KEY)), Principal("jill"),
                     clock=lambda: now[0])
    first = sign_request(auth).headers["Authorization"]
    now[0] += 0.5
    assert sign_request(auth).headers["Authorization"] == first
    assert auth.signatures == 1
    now[0] += 1
    later = sign_request(auth)
    assert auth.signatures == 2
    public = serialization.load_pem_private_key(VECTOR_KEY, None).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(base64.b64decode(params(later.headers["Authorization"])["signature"]),
                  f"date: {later.headers['Date']}".encode(), padding.PKCS1v15(), hashes.SHA256())


def test_fingerprints_match_ssh_keygen(tmp_path: Path) -> None:
    for private in (rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP256R1())):
        pub = tmp_path / "k.pub"
        pub.write_bytes(openssh_pub(private) + b" c\n")
        blob = base64.b64decode(pub.read_text().split()[1])
        for algo, ours in (("md5", "MD5:" + md5_fingerprint(blob)),
                           ("sha256", sha256_fingerprint(blob))):
            printed = subprocess.run(["ssh-keygen", "-l", "-E", algo, "-f", str(pub)],
                                     check=True, capture_output=True, text=True).stdout.split()[1]
            assert printed == ours


def test_key_id_forms_are_normalised() -> None:
    blob = base64.b64decode(openssh_pub(serialization.load_pem_private_key(VECTOR_KEY, None))
                            .split()[1])
    for given in (VECTOR_MD5, VECTOR_MD5.upper(), "MD5:" + VECTOR_MD5, VECTOR_SHA256,
                  VECTOR_SHA256 + "="):
        assert fingerprint_matches(blob, normalise_key_id(given)), given
    assert normalise_key_id("MD5:" + VECTOR_MD5.upper()) == VECTOR_MD5
    assert not fingerprint_matches(blob, normalise_key_id("SHA256:" + "A" * 43))
    for bad in ("", "id_rsa", "47:e7:e3", "MD5:zz"):
        with pytest.raises(ConfigError, match="not a key fingerprint"):
            normalise_key_id(bad)


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _p521() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP521R1())


_PF = serialization.PrivateFormat


@pytest.mark.parametrize(("make", "fmt"), [
    (_rsa, _PF.TraditionalOpenSSL), (_rsa, _PF.PKCS8), (_rsa, _PF.OpenSSH),
    (_p256, _PF.TraditionalOpenSSL), (_p521, _PF.PKCS8), (_p256, _PF.OpenSSH),
], ids=["rsa-pkcs1", "rsa-pkcs8", "rsa-openssh", "p256-sec1", "p521-pkcs8", "p256-openssh"])
def test_key_formats_load(tmp_path: Path, make: object, fmt: serialization.PrivateFormat) -> None:
    private = make()  # type: ignore[operator]
    path = write(tmp_path / "k", private.private_bytes(serialization.Encoding.PEM, fmt,
                                                       serialization.NoEncryption()))
    key = load_key_file(path)
    assert isinstance(key, FileKey)
    assert key.blob == base64.b64decode(openssh_pub(private).split()[1])


def test_encrypted_keys_report_their_public_half(tmp_path: Path) -> None:
    private = rsa.generate_private_key(65537, 2048)
    blob = base64.b64decode(openssh_pub(private).split()[1])
    enc = serialization.BestAvailableEncryption(b"secret passphrase")
    # OpenSSH files keep the public key in clear
    openssh = write(tmp_path / "a", private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, enc))
    with pytest.raises(EncryptedKeyError) as info:
        load_key_file(openssh)
    assert info.value.blob == blob
    # PEM files do not: the .pub beside it tells
    pem = write(tmp_path / "b", private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    with pytest.raises(EncryptedKeyError) as info:
        load_key_file(pem)
    assert info.value.blob is None
    (tmp_path / "b.pub").write_bytes(openssh_pub(private) + b"\n")
    with pytest.raises(EncryptedKeyError) as info:
        load_key_file(pem)
    assert info.value.blob == blob


def test_unusable_keys_are_refused_with_a_reason(tmp_path: Path) -> None:
    p384 = write(tmp_path / "p384", ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(ConfigError, match="P-384 needs ecdsa-sha384"):
        load_key_file(p384)
    ed = write(tmp_path / "ed", ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))
    with pytest.raises(ConfigError, match="only RSA and ECDSA"):
        load_key_file(ed)
    with pytest.raises(ConfigError, match="is not an RSA or ECDSA private key"):
        load_key_file(write(tmp_path / "junk", b"hello"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_key_file(tmp_path / "missing")


def test_find_key_by_fingerprint_in_ssh_dir(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    write(tmp_path / "work_key", VECTOR_KEY)
    (tmp_path / "work_key.pub").write_bytes(
        openssh_pub(serialization.load_pem_private_key(VECTOR_KEY, None)) + b" work\n")
    other = rsa.generate_private_key(65537, 2048)
    (tmp_path / "other.pub").write_bytes(openssh_pub(other) + b" other\n")
    for key_id in (VECTOR_MD5, "MD5:" + VECTOR_MD5, VECTOR_SHA256):
        key = find_key(key_id, None, tmp_path)
        assert key.md5 == VECTOR_MD5
        assert key.source == str(tmp_path / "work_key")
    with pytest.raises(ConfigError, match="neither in ssh-agent nor in"):
        find_key("SHA256:" + "B" * 43, None, tmp_path)


def test_find_key_errors_name_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(ConfigError, match=r"key file .*nope does not exist"):
        find_key(None, str(tmp_path / "nope"), tmp_path)
    with pytest.raises(ConfigError, match="no SSH key found"):
        find_key(None, None, tmp_path)
    path = write(tmp_path / "k.pem", VECTOR_KEY)
    with pytest.raises(ConfigError, match=f"has fingerprint {VECTOR_MD5}, not the key id"):
        find_key("SHA256:" + "C" * 43, str(path), tmp_path)
    secret = b"do-not-print-me"
    enc = write(tmp_path / "enc", rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(secret)))
    with pytest.raises(AuthError, match=r"protected by a passphrase .* run: ssh-add") as info:
        find_key(None, str(enc), tmp_path)
    assert secret.decode() not in str(info.value)
    # the default files are found without a key id
    write(tmp_path / "id_rsa", VECTOR_KEY)
    assert find_key(None, None, tmp_path).md5 == VECTOR_MD5
