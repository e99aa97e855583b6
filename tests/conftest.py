"""Session-wide fixtures: the real local servers (started lazily, once per session).

Each ``tests/servers/fixture_*.py`` module is a pytest plugin defining the session fixture
of one server (see ``tests/servers/_shared.py`` for how a server is shared by the xdist
workers and stopped by PID at the end).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.servers._shared import stop_all

_HERE = Path(__file__).parent

pytest_plugins = sorted(
    f"tests.servers.{p.stem}" for p in (_HERE / "servers").glob("fixture_*.py")
)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # the controller (or the only process, without xdist) stops what the session started
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        stop_all(factory)
