"""The Swift target of the mounted-tool tests: a fresh container on the Swift all-in-one.

Credentials reach the mount as a tempauth user has them, in ``ST_AUTH``, ``ST_USER`` and
``ST_KEY``; the container (and its segments container) is deleted when the test ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.mount._target import MountTarget, TargetContext, TargetFactory
from tests.swift._util import drop_container, new_container


@contextlib.contextmanager
def _swift(ctx: TargetContext) -> Iterator[MountTarget]:
    server = ctx.request.getfixturevalue("swift_server")
    container = new_container(server)
    try:
        yield MountTarget(source=f"swift://{container}/mnt",
                          env={"ST_AUTH": server["auth_url"], "ST_USER": server["user"],
                               "ST_KEY": server["key"]})
    finally:
        drop_container(server, container)


TARGETS: dict[str, TargetFactory] = {"swift": _swift}
