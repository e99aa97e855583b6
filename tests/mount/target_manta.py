"""The Manta targets of the mounted-tool tests: a fresh directory on the test server.

``manta`` is Manta v1 (renames are SnapLinks), ``manta-v2`` is v2 (renames copy).  The
mount logs in the way a user does, with ``-o url=,user=,key_file=`` (an unencrypted RSA
key file); ssh-agent is kept out of it so the key used is the one named.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.mount._target import MountTarget, TargetContext, TargetFactory


def _factory(fixture: str) -> TargetFactory:
    @contextlib.contextmanager
    def target(ctx: TargetContext) -> Iterator[MountTarget]:
        server = ctx.request.getfixturevalue(fixture)
        base = server.fresh_dir(ctx.name)
        # the test server is thrown away with the session: nothing to clean up
        yield MountTarget(source=f"manta:{base}", options=server.options(),
                          env={"SSH_AUTH_SOCK": ""})

    return target


TARGETS: dict[str, TargetFactory] = {
    "manta": _factory("manta_server"),
    "manta-v2": _factory("manta_v2_server"),
}
