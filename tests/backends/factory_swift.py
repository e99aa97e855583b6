"""The Swift backend in the conformance suite, on the real Swift all-in-one (tempauth).

Every test gets a fresh container (deleted with its segments container at the end), and
the backend is rooted at a prefix inside it, so prefix handling is exercised throughout.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import trio

from storefs.backends.base import Backend
from tests.swift._util import drop_container, new_container, swift_backend

if TYPE_CHECKING:  # conftest imports this module: no import cycle at run time
    from tests.backends.conftest import Factory, FactoryContext


@contextlib.asynccontextmanager
async def _swift(ctx: FactoryContext) -> AsyncIterator[Backend]:
    server = ctx.request.getfixturevalue("swift_server")
    container = await trio.to_thread.run_sync(new_container, server)
    backend = swift_backend(server, container, "root/")
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.aclose()
        await trio.to_thread.run_sync(drop_container, server, container)


FACTORIES: dict[str, Factory] = {"swift": _swift}
