"""Logging set-up: levels, destinations, and redaction of secrets.

Backends never log secrets; the redacting filter is a second line of defence: any value
registered with ``add_secret`` (keys, passwords, tokens from options or the environment)
is replaced by ``***`` in every record before it is written anywhere.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

_secrets: set[str] = set()

#: environment variables whose values are secrets
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "OS_PASSWORD",
              "OS_APPLICATION_CREDENTIAL_SECRET", "ST_KEY", "OS_TOKEN", "OS_AUTH_TOKEN",
              "MANTA_KEY_PASSPHRASE", "GOOGLE_OAUTH_ACCESS_TOKEN")


def add_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _secrets.add(value)


def add_env_secrets() -> None:
    for name in SECRET_ENV:
        add_secret(os.environ.get(name))


def redact(text: str) -> str:
    for s in _secrets:
        if s in text:
            text = text.replace(s, "***")
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = redact(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


def setup(verbosity: int, log_file: Path | None, *, foreground: bool) -> None:
    """``-v`` is INFO, ``-vv`` DEBUG; otherwise WARNING.  Daemons without ``--log-file``
    log to the file the caller chose (in the cache directory)."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 \
        else logging.DEBUG
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=10 << 20,
                                                       backupCount=3)
        fmt = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    elif foreground:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "storefs: %(levelname)s %(name)s: %(message)s"
    else:
        handler = logging.NullHandler()
        fmt = ""
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level)
    # the SDKs are chatty at INFO and may log request details at DEBUG
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore", "google", "swiftclient",
                  "keystoneauth", "paramiko", "s3transfer"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
