"""The storefs configuration file: per-store settings and credentials in one YAML file.

Looked up in this order (the first that exists wins): ``$STOREFS_CONFIG``,
``$XDG_CONFIG_HOME/storefs/config.yaml`` (``~/.config/storefs/config.yaml``),
``/etc/storefs/config.yaml``.  Top-level keys are store names (``manta``, ``s3``, ``gcs``,
``swift``, ``http``); each holds the same settings as that store's ``-o`` options, so

    s3:
      endpoint: http://127.0.0.1:9000
      access_key: AKIA...

equals ``-o endpoint=http://127.0.0.1:9000,access_key=AKIA...``.  Precedence, highest
first: ``-o`` options, environment variables, this file.  A file holding secrets must not
be readable by group or others (like ssh's keys); storefs refuses it otherwise.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from storefs.errors import ConfigError

#: setting names whose values are secrets: never logged, and their file must be private
SECRET_WORDS = ("secret", "password", "passphrase", "token", "key_data", "private", "header",
                "authorization")


def config_path() -> Path | None:
    """The configuration file in effect, or None."""
    explicit = os.environ.get("STOREFS_CONFIG")
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ConfigError(f"STOREFS_CONFIG={explicit}: no such file")
        return p
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for p in (Path(xdg) / "storefs" / "config.yaml", Path("/etc/storefs/config.yaml")):
        if p.is_file():
            return p
    return None


def is_secret(name: str) -> bool:
    return any(w in name.lower() for w in SECRET_WORDS)


def _flatten(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load(path: Path | None = None) -> dict[str, dict[str, str]]:
    """All sections of the file (``{}`` when there is none), values as strings."""
    path = path or config_path()
    if path is None:
        return {}
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: cannot read configuration: {first}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of store names to settings")
    out: dict[str, dict[str, str]] = {}
    has_secret = False
    for name, settings in raw.items():
        if not isinstance(settings, dict):
            raise ConfigError(f"{path}: section {name!r} must be a mapping of settings")
        section = {str(k): _flatten(v) for k, v in settings.items() if v is not None}
        has_secret = has_secret or any(is_secret(k) for k in section)
        out[str(name)] = section
    if has_secret:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{path}: holds secrets but is readable by others "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
            )
    return out


def section(name: str, path: Path | None = None) -> dict[str, str]:
    """The settings of one store (``{}`` when the file or section is absent)."""
    return load(path).get(name, {})
