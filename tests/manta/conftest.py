"""Helpers for the Manta backend tests: backends built from explicit settings only."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from storefs.backends.manta import MantaBackend, settings_from
from storefs.source import parse_source
from tests.servers.fixture_manta import MantaServer

MakeBackend = Callable[..., contextlib.AbstractAsyncContextManager[MantaBackend]]


@pytest.fixture
def empty_ssh_dir(tmp_path: Path) -> Path:
    d = tmp_path / "dot-ssh"
    d.mkdir()
    return d


@pytest.fixture
def make_backend(empty_ssh_dir: Path) -> MakeBackend:
    """``make_backend(base, options, connect=True, **backend_kwargs)``: a backend rooted at
    the Manta path ``base`` that sees no environment, config file or ~/.ssh but its own."""

    @contextlib.asynccontextmanager
    async def make(base: str, options: dict[str, str], *, connect: bool = True,
                   **kwargs: object) -> AsyncIterator[MantaBackend]:
        settings = settings_from(parse_source(f"manta:{base}"), options, environ={},
                                 section={})
        settings.ssh_dir = empty_ssh_dir
        backend = MantaBackend(settings, **kwargs)  # type: ignore[arg-type]
        try:
            if connect:
                await backend.connect()
            yield backend
        finally:
            await backend.aclose()

    return make


@pytest.fixture
def stor(manta_server: MantaServer) -> str:
    """A fresh directory of the v1 server."""
    return manta_server.fresh_dir("manta")
