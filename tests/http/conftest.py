"""Helpers for the HTTP backend tests: backends built from explicit settings only (no
config file), on the session's nginx and http.server (``tests/servers/fixture_nginx.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest

from storefs.backends.http import HttpBackend, settings_from
from storefs.source import parse_source
from tests.servers.fixture_nginx import HttpServers

OpenHttp = Callable[..., contextlib.AbstractAsyncContextManager[HttpBackend]]


@contextlib.asynccontextmanager
async def open_http(url: str, options: Mapping[str, str] | None = None, *,
                    connect: bool = True, **kwargs: object) -> AsyncIterator[HttpBackend]:
    """A backend for ``url`` with ``options`` and no config file, connected unless told."""
    backend = HttpBackend(settings_from(parse_source(url), dict(options or {}), section={}),
                          **kwargs)  # type: ignore[arg-type]
    try:
        if connect:
            await backend.connect()
        yield backend
    finally:
        await backend.aclose()


def write_tree(root: Path, files: Mapping[str, bytes | None]) -> None:
    """Files (``None``: an empty directory) below ``root``."""
    for rel, data in files.items():
        path = root / rel
        if data is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


@pytest.fixture
def servers(http_servers: HttpServers) -> HttpServers:
    return http_servers
