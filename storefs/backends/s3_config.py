"""Settings of the S3 backend: where the endpoint is, how to reach it, whose credentials.

Each setting comes from the first of these that has it (highest first):

1. ``-o`` options of the mount;
2. environment variables (``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, ``AWS_REGION``/
   ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``..., ``AWS_CA_BUNDLE``);
3. a connector file named by ``-o config_file=PATH``;
4. the ``s3`` section of the storefs configuration file (``storefs.config``);
5. the AWS config and credentials files (``~/.aws/config``, ``~/.aws/credentials``, or
   ``AWS_CONFIG_FILE``/``AWS_SHARED_CREDENTIALS_FILE``), profile ``AWS_PROFILE`` or
   ``-o profile``, and the rest of boto3's credential chain (SSO, credential_process,
   container and instance roles).

Files (3 and 4) may use the spellings of the S3 connector storefs descends from, which kept
access key, secret, default bucket, endpoint and tls in one YAML file: ``access_key`` /
``access_key_id`` / ``aws_access_key_id``, ``secret_key`` / ``secret`` /
``secret_access_key`` / ``aws_secret_access_key``, ``endpoint`` / ``endpoint_url`` /
``host`` / ``url``, ``tls`` / ``use_ssl`` / ``secure`` / ``ssl``, ``bucket`` /
``default_bucket`` (case, ``-`` and ``_`` do not matter, camelCase works too).  A connector
file is either flat (the settings at top level) or has them under an ``s3:`` key.

Nothing here touches the network.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from storefs import config as storefs_config
from storefs.backends import _options
from storefs.errors import ConfigError

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: ``-o`` options: name -> one-line help (the default is in the help)
OPTIONS: dict[str, str] = {
    "endpoint": "S3 endpoint URL, e.g. http://127.0.0.1:9000 (default: AWS for the region)",
    "region": "region of the bucket (default: AWS_REGION, the profile's, else us-east-1)",
    "addressing_style": "path, virtual or auto (default: auto on AWS, path elsewhere)",
    "tls": "true/false: https or http when the endpoint names no scheme (default true)",
    "ca_bundle": "PEM file of the CA certificates to trust (default: AWS_CA_BUNDLE, system)",
    "insecure": "do not verify the server's TLS certificate (default off)",
    "profile": "profile of the AWS config/credentials files (default: AWS_PROFILE, default)",
    "access_key": "access key id (prefer the environment or a config file: -o shows in ps)",
    "secret_key": "secret access key (prefer the environment or a config file)",
    "session_token": "session token of temporary credentials",
    "anonymous": "unsigned requests, for public buckets (default off)",
    "requester_pays": "pay for requests to a requester-pays bucket (default off)",
    "storage_class": "storage class of new objects, e.g. STANDARD_IA (default: the bucket's)",
    "sse": "server-side encryption of new objects: AES256 or aws:kms (default: the bucket's)",
    "sse_kms_key_id": "KMS key id for sse=aws:kms (default: the account's S3 key)",
    "conditional_writes": "auto, on or off: If-None-Match/If-Match on writes (auto: on for AWS)",
    "connections": "HTTP connections and worker threads (default 16)",
    "connect_timeout": "seconds to wait for a connection (default 10)",
    "read_timeout": "seconds to wait for response bytes (default 60)",
    "multipart_threshold": "files from this size are written in parts (default 8MiB)",
    "part_size": "size of upload parts (default 8MiB, at least 5MiB)",
    "copy_multipart_threshold": "copies from this size use UploadPartCopy (default 5GiB)",
    "copy_part_size": "part size of multipart copies (default 512MiB)",
    "list_page_size": "keys per ListObjectsV2 page (default 1000)",
    "check_etag": "compare the ETag of each PUT with the MD5 of the bytes (default true)",
    "max_metadata_value": "longest user metadata value the server keeps, in bytes "
                          "(default: no limit but S3's 2 KiB in all; Swift's S3 layer: 256)",
    "config_file": "YAML file with the settings above (connector shape accepted)",
}

#: settings a file may hold: the options, plus the connector's default bucket
_FILE_SETTINGS = set(OPTIONS) - {"config_file"} | {"bucket"}

#: other spellings (after normalisation: lower case, '-' -> '_', camelCase split)
_ALIASES: dict[str, str] = {
    "access_key_id": "access_key",
    "aws_access_key_id": "access_key",
    "accesskey": "access_key",
    "key_id": "access_key",
    "secret": "secret_key",
    "secret_access_key": "secret_key",
    "aws_secret_access_key": "secret_key",
    "access_key_secret": "secret_key",
    "secretkey": "secret_key",
    "aws_session_token": "session_token",
    "token": "session_token",
    "endpoint_url": "endpoint",
    "host": "endpoint",
    "url": "endpoint",
    "server": "endpoint",
    "use_ssl": "tls",
    "secure": "tls",
    "ssl": "tls",
    "https": "tls",
    "use_https": "tls",
    "region_name": "region",
    "default_bucket": "bucket",
    "bucket_name": "bucket",
    "verify": "ca_bundle",
    "ca_cert": "ca_bundle",
    "cafile": "ca_bundle",
    "ca_file": "ca_bundle",
    "insecure_skip_verify": "insecure",
    "no_verify_ssl": "insecure",
    "path_style": "addressing_style",
    "force_path_style": "addressing_style",
    "server_side_encryption": "sse",
    "kms_key_id": "sse_kms_key_id",
    "sse_kms_key": "sse_kms_key_id",
    "max_connections": "connections",
}

_TRUE = {"", "1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_AWS_HOST_RE = re.compile(r"(^|\.)amazonaws\.com(\.cn)?$")


def normalise_name(name: str) -> str:
    """``accessKeyID`` / ``Access-Key-Id`` / ``access_key_id`` -> ``access_key_id``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    return spaced.lower().replace("-", "_")


def canonical(name: str) -> str:
    n = normalise_name(name)
    return _ALIASES.get(n, n)


def parse_bool(name: str, value: str) -> bool:
    return _options.flag("s3", name, value)


def parse_size(name: str, value: str) -> int:
    """``8388608``, ``8M``, ``8MiB``, ``8mb`` -> bytes (binary multiples)."""
    m = _SIZE_RE.match(value)
    if not m:
        raise ConfigError(f"{name}={value!r}: expected a size such as 8388608, 8M or 8MiB")
    n = int(m.group(1))
    return n * {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": 1024 * GiB}[m.group(2).lower()]


def parse_number(name: str, value: str, *, low: float, high: float) -> float:
    try:
        n = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: expected a number") from None
    if not low <= n <= high:
        raise ConfigError(f"{name}={value!r}: expected a number from {low:g} to {high:g}")
    return n


def read_settings_file(path: Path) -> dict[str, str]:
    """The S3 settings of a connector file (flat, or under ``s3:``), canonical names.

    Refuses a file with secrets that group or others can read, like ``storefs.config``."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: cannot read S3 settings: {first}") from exc
    if isinstance(raw, dict) and isinstance(raw.get("s3"), dict):
        raw = raw["s3"]
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of S3 settings")
    settings = canonical_settings(raw, str(path))
    if any(storefs_config.is_secret(k) for k in settings):
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{path}: holds secrets but is readable by others "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
            )
    return settings


def canonical_settings(raw: Mapping[str, Any], where: str) -> dict[str, str]:
    """Settings of a file under their canonical names; unknown names are logged and
    skipped (a connector file may hold settings of other tools)."""
    out: dict[str, str] = {}
    for key, value in raw.items():
        if value is None or isinstance(value, dict | list):
            continue
        name = canonical(str(key))
        if name not in _FILE_SETTINGS:
            log.warning("%s: ignoring unknown S3 setting %r", where, str(key))
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if name == "addressing_style" and normalise_name(str(key)) in ("path_style",
                                                                      "force_path_style"):
            text = "path" if parse_bool(str(key), text) else "auto"
        out[name] = text
    return out


@dataclass(frozen=True)
class S3Settings:
    """Everything the backend needs, resolved, without secrets in ``repr``."""

    bucket: str
    prefix: str
    #: None: AWS's endpoint for the region
    endpoint_url: str | None
    region: str
    addressing_style: str | None
    use_ssl: bool
    #: None: botocore's default (AWS_CA_BUNDLE, then the system store); a path; or False
    verify: str | bool | None
    profile: str | None
    anonymous: bool
    requester_pays: bool
    storage_class: str | None
    sse: str | None
    sse_kms_key_id: str | None
    conditional_writes: bool
    connections: int
    connect_timeout: float
    read_timeout: float
    multipart_threshold: int
    part_size: int
    copy_multipart_threshold: int
    copy_part_size: int
    list_page_size: int
    check_etag: bool
    #: None: only S3's 2 KiB total applies
    max_metadata_value: int | None = None
    #: the file settings (3 and 4 above) came from, for messages
    sources: tuple[str, ...] = ()

    @property
    def is_aws(self) -> bool:
        if self.endpoint_url is None:
            return True
        host = urllib.parse.urlsplit(self.endpoint_url).hostname or ""
        return bool(_AWS_HOST_RE.search(host))

    @property
    def endpoint_for_messages(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region})"


@dataclass(frozen=True)
class Credentials:
    """Explicit keys, when the options, environment or a file gave them; else boto3's
    chain (profile, SSO, roles) finds them.  Never logged, never in messages."""

    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)


def _rank(where: str) -> int:
    """0 for an ``-o`` option, 1 for an environment variable, 2 for a file."""
    if where.startswith("-o "):
        return 0
    return 1 if where.startswith("AWS_") else 2


def _endpoint(value: str, tls: bool | None, source: str) -> tuple[str, bool]:
    """An endpoint URL with a scheme (``host:port`` alone takes it from ``tls``)."""
    value = value.strip().rstrip("/")
    if not value:
        raise ConfigError(f"{source}: endpoint is empty (give a URL such as "
                          "https://s3.example.com, or leave the option out)")
    if "://" not in value:
        scheme = "http" if tls is False else "https"
        value = f"{scheme}://{value}"
    url = urllib.parse.urlsplit(value)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"{source}: endpoint {value!r} is not an http:// or https:// URL")
    if tls is not None and tls != (url.scheme == "https"):
        raise ConfigError(
            f"{source}: endpoint {value} says {url.scheme}:// but tls={'true' if tls else 'false'}"
        )
    try:
        url.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigError(f"{source}: endpoint {value!r} has an invalid port") from None
    return value, url.scheme == "https"


def resolve(
    bucket: str,
    prefix: str,
    options: Mapping[str, str],
    env: Mapping[str, str] | None = None,
    storefs_section: Mapping[str, str] | None = None,
    profile_config: Any = None,
) -> tuple[S3Settings, Credentials]:
    """Resolve every setting by the precedence in the module docstring.

    ``profile_config`` is a callable ``(profile) -> dict`` giving the AWS config file's
    scoped settings of a profile (boto3's ``Session(...)._session.get_scoped_config``); it is
    consulted for the endpoint and addressing style only: boto3 reads the rest itself."""
    env = os.environ if env is None else env
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown S3 option {unknown[0]!r}")
    files: list[tuple[str, dict[str, str]]] = []
    if options.get("config_file"):
        path = Path(options["config_file"]).expanduser()
        if not path.is_file():
            raise ConfigError(f"config_file={options['config_file']}: no such file")
        files.append((str(path), read_settings_file(path)))
    if storefs_section is None:
        storefs_section = storefs_config.section("s3")
    if storefs_section:
        where = str(storefs_config.config_path() or "storefs config")
        files.append((where, canonical_settings(storefs_section, where)))

    def from_files(name: str) -> tuple[str, str] | None:
        for where, settings in files:
            if name in settings:
                return settings[name], where
        return None

    def pick(name: str, *env_names: str) -> tuple[str, str] | None:
        """(value, where it came from) of the first source that sets ``name``."""
        if name in options:
            return options[name], f"-o {name}"
        for e in env_names:
            if env.get(e):
                return env[e], e
        return from_files(name)

    def flag(name: str, default: bool, *env_names: str) -> bool:
        got = pick(name, *env_names)
        return default if got is None else parse_bool(name, got[0])

    def size(name: str, default: int) -> int:
        got = pick(name)
        return default if got is None else parse_size(name, got[0])

    got_tls = pick("tls")
    tls = None if got_tls is None else parse_bool("tls", got_tls[0])

    profile_got = pick("profile", "AWS_PROFILE")
    profile = profile_got[0] if profile_got else None
    scoped: dict[str, Any] = {}
    if profile_config is not None:
        scoped = profile_config(profile) or {}
    s3_scoped: dict[str, Any] = scoped["s3"] if isinstance(scoped.get("s3"), dict) else {}

    endpoint_got = pick("endpoint", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    if endpoint_got is None:
        ep = s3_scoped.get("endpoint_url") or scoped.get("endpoint_url")
        if ep:
            endpoint_got = (str(ep), f"profile {profile or 'default'}")
    if endpoint_got is not None:
        endpoint_url, use_ssl = _endpoint(endpoint_got[0], tls, endpoint_got[1])
    else:
        endpoint_url, use_ssl = None, tls is not False

    region_got = pick("region", "AWS_REGION", "AWS_DEFAULT_REGION")
    region = region_got[0] if region_got else str(scoped.get("region") or "us-east-1")

    style_got = pick("addressing_style")
    style = style_got[0].strip().lower() if style_got else s3_scoped.get("addressing_style")
    if style is not None and style not in ("path", "virtual", "auto"):
        raise ConfigError(f"addressing_style={style!r}: expected path, virtual or auto")

    verify: str | bool | None = None
    if flag("insecure", False):
        verify = False
    else:
        ca = pick("ca_bundle")
        if ca is not None:
            v = ca[0].strip()
            if v.lower() in _FALSE:  # "verify: false" in a connector file
                verify = False
            elif v.lower() not in _TRUE:
                p = Path(v).expanduser()
                if not p.is_file():
                    raise ConfigError(f"ca_bundle={v}: no such file")
                verify = str(p)

    sse_got = pick("sse")
    sse = sse_got[0].strip() if sse_got else None
    if sse is not None:
        aliases = {"aes256": "AES256", "sse-s3": "AES256", "aws:kms": "aws:kms", "kms": "aws:kms",
                   "sse-kms": "aws:kms"}
        if sse.lower() not in aliases:
            raise ConfigError(f"sse={sse!r}: expected AES256 or aws:kms")
        sse = aliases[sse.lower()]
    kms_got = pick("sse_kms_key_id")
    kms = kms_got[0].strip() if kms_got else None
    if kms and sse != "aws:kms":
        raise ConfigError("sse_kms_key_id needs sse=aws:kms")

    sc_got = pick("storage_class")
    storage_class = sc_got[0].strip().upper() if sc_got else None

    cond_got = pick("conditional_writes")
    cond = (cond_got[0] if cond_got else "auto").strip().lower()
    if cond not in ("auto", "on", "off") and cond not in _TRUE | _FALSE:
        raise ConfigError(f"conditional_writes={cond!r}: expected auto, on or off")

    conns_got = pick("connections")
    connections = int(parse_number("connections", conns_got[0], low=1, high=256)) \
        if conns_got else 16
    ct_got, rt_got = pick("connect_timeout"), pick("read_timeout")
    connect_timeout = parse_number("connect_timeout", ct_got[0], low=0.1, high=3600) \
        if ct_got else 10.0
    read_timeout = parse_number("read_timeout", rt_got[0], low=0.1, high=3600) if rt_got else 60.0
    page_got = pick("list_page_size")
    page = int(parse_number("list_page_size", page_got[0], low=1, high=1000)) if page_got else 1000

    part_size = size("part_size", 8 * MiB)
    if not 5 * MiB <= part_size <= 5 * GiB:
        raise ConfigError(f"part_size={part_size}: S3 parts are 5 MiB to 5 GiB")
    copy_part = size("copy_part_size", 512 * MiB)
    if not 5 * MiB <= copy_part <= 5 * GiB:
        raise ConfigError(f"copy_part_size={copy_part}: S3 parts are 5 MiB to 5 GiB")
    copy_threshold = size("copy_multipart_threshold", 5 * GiB)
    if copy_threshold > 5 * GiB:
        raise ConfigError("copy_multipart_threshold: S3 copies at most 5 GiB in one request")

    anonymous = flag("anonymous", False)
    access = pick("access_key", "AWS_ACCESS_KEY_ID")
    secret = pick("secret_key", "AWS_SECRET_ACCESS_KEY")
    token = pick("session_token", "AWS_SESSION_TOKEN")
    if (access is None) != (secret is None):
        have, miss = ("access key", "secret key") if access else ("secret key", "access key")
        where = (access or secret or ("", ""))[1]
        raise ConfigError(f"{where} gives an S3 {have} but no {miss}")
    if access is not None and profile_got is not None \
            and _rank(profile_got[1]) < _rank(access[1]):
        # a profile named by a stronger source beats the keys (-o profile over AWS_ACCESS_KEY_ID,
        # AWS_PROFILE over a file's keys); at equal rank the keys win, as in the AWS CLI
        access = secret = token = None
    creds = Credentials(access[0] if access else None, secret[0] if secret else None,
                        token[0] if token and access else None)

    settings = S3Settings(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=endpoint_url,
        region=region,
        addressing_style=style,
        use_ssl=use_ssl,
        verify=verify,
        profile=profile,
        anonymous=anonymous,
        requester_pays=flag("requester_pays", False),
        storage_class=storage_class,
        sse=sse,
        sse_kms_key_id=kms,
        conditional_writes=False,  # decided below, once the endpoint is known
        connections=connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        multipart_threshold=max(size("multipart_threshold", 8 * MiB), 1),
        part_size=part_size,
        copy_multipart_threshold=copy_threshold,
        copy_part_size=copy_part,
        list_page_size=page,
        check_etag=flag("check_etag", True),
        max_metadata_value=size("max_metadata_value", 0) or None,
        sources=tuple(w for w, _ in files),
    )
    on = settings.is_aws if cond == "auto" else cond in _TRUE or cond == "on"
    if settings.addressing_style is None and not settings.is_aws:
        # most S3-compatible servers (MinIO, Ceph, Swift, moto on an IP) want path style
        settings = replace(settings, addressing_style="path")
    return replace(settings, conditional_writes=on), creds
