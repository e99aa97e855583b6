"""The Swift backend in the conformance suite, on the real Swift all-in-one (tempauth).

Every test gets a fresh container (deleted with its segments container at the end), and
the backend is rooted at a prefix inside it, so prefix handling is exercised throughout.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import trio

from storefs.backends.base import Backend
from storefs.backends.swift import SwiftBackend, connection_kwargs
from tests.backends.conftest import Factory, FactoryContext


def sdk_connection(server: dict[str, Any]) -> Any:
    """A plain python-swiftclient connection: what ``swift upload`` and other tools use."""
    from swiftclient import client as sc

    return sc.Connection(authurl=server["auth_url"], user=server["user"], key=server["key"],
                         auth_version="1", retries=0)


def new_container(server: dict[str, Any]) -> str:
    name = f"storefs-{uuid.uuid4().hex[:16]}"
    sdk_connection(server).put_container(name)
    return name


def drop_container(server: dict[str, Any], name: str) -> None:
    """Delete a container, its segments container, and everything in them."""
    from swiftclient import client as sc

    conn = sdk_connection(server)
    for container in (name, f"{name}_segments"):
        try:
            _, objects = conn.get_container(container, full_listing=True)
        except sc.ClientException as exc:
            if exc.http_status == 404:
                continue
            raise
        for o in objects:
            with contextlib.suppress(sc.ClientException):
                conn.delete_object(container, o["name"])
        conn.delete_container(container)


def swift_backend(server: dict[str, Any], container: str, prefix: str = "",
                  **settings: str) -> SwiftBackend:
    kwargs = connection_kwargs({"auth_url": server["auth_url"], "username": server["user"],
                                "password": server["key"], **settings})
    return SwiftBackend(container, prefix, kwargs, auth_url=server["auth_url"])


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
