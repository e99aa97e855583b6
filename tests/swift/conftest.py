"""Fixtures of the Swift-specific tests: a fresh container on the Swift AIO per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from storefs.backends.swift import SwiftBackend
from tests.swift._util import drop_container, new_container, sdk_connection, swift_backend


@pytest.fixture
def container(swift_server: dict[str, Any]) -> Iterator[str]:
    name = new_container(swift_server)
    yield name
    drop_container(swift_server, name)


@pytest.fixture
def sdk(swift_server: dict[str, Any]) -> Any:
    """python-swiftclient itself, as ``swift upload`` and other tools use it."""
    return sdk_connection(swift_server)


@pytest.fixture
async def swift(swift_server: dict[str, Any], container: str) -> AsyncIterator[SwiftBackend]:
    backend = swift_backend(swift_server, container)
    await backend.connect()
    yield backend
    await backend.aclose()
