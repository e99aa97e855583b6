"""Parsing of ``-o`` option values shared by the SDK-based backends (gcs, swift)."""

from __future__ import annotations

from storefs.errors import ConfigError


def flag(store: str, name: str, value: str) -> bool:
    """``-o name`` alone, or ``name=true/false`` (also 1/0, yes/no, on/off)."""
    v = value.strip().lower()
    if v in ("", "1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{store}: {name}={value!r}: expected true or false")


def positive(store: str, name: str, value: str, *, integer: bool = False) -> float:
    """A number above zero (an integer with ``integer``), or a one-line ``ConfigError``."""
    try:
        v = int(value) if integer else float(value)
    except ValueError:
        v = 0
    if v <= 0:
        kind = "integer" if integer else "number"
        raise ConfigError(f"{store}: {name}={value!r}: expected a positive {kind}")
    return v
