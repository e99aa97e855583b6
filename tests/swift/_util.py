"""Helpers shared by the Swift tests and the conformance factory: containers on the AIO."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from storefs.backends.swift import SwiftBackend, connection_kwargs


def sdk_connection(server: dict[str, Any], user: str | None = None) -> Any:
    """A plain python-swiftclient connection: what ``swift upload`` and other tools use."""
    from swiftclient import client as sc

    user = user or server["user"]
    key = server["key"] if user == server["user"] else server["users"][user]["key"]
    return sc.Connection(authurl=server["auth_url"], user=user, key=key, auth_version="1",
                         retries=0)


def new_container(server: dict[str, Any]) -> str:
    name = f"storefs-{uuid.uuid4().hex[:16]}"
    sdk_connection(server).put_container(name)
    return name


def drop_container(server: dict[str, Any], name: str, user: str | None = None) -> None:
    """Delete a container, its segments container, and everything in them."""
    from swiftclient import client as sc

    conn = sdk_connection(server, user)
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
        with contextlib.suppress(sc.ClientException):
            conn.delete_container(container)


def swift_backend(server: dict[str, Any], container: str, prefix: str = "",
                  user: str | None = None, **settings: str) -> SwiftBackend:
    """The backend on the AIO with tempauth, as ``ST_AUTH``/``ST_USER``/``ST_KEY`` make it."""
    user = user or server["user"]
    key = server["key"] if user == server["user"] else server["users"][user]["key"]
    kwargs = connection_kwargs({"auth_url": server["auth_url"], "username": user,
                                "password": key, **settings})
    return SwiftBackend(container, prefix, kwargs, auth_url=server["auth_url"])
