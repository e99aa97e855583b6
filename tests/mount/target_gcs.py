"""The GCS target of the mounted-tool tests: a fresh bucket on fake-gcs-server.

The mount reaches the emulator the way a user points storefs at one: ``-o endpoint=URL``
and ``-o anonymous`` (the emulator checks no credentials).  The bucket is deleted when the
test ends, because the emulator keeps objects in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.gcs._util import drop_bucket, new_bucket
from tests.mount._target import MountTarget, TargetContext, TargetFactory


@contextlib.contextmanager
def _gcs(ctx: TargetContext) -> Iterator[MountTarget]:
    server = ctx.request.getfixturevalue("gcs_server")
    bucket = new_bucket(server)
    try:
        yield MountTarget(source=f"gs://{bucket}/mnt",
                          options={"endpoint": server["endpoint"], "anonymous": "true"},
                          env={"NO_GCE_CHECK": "true"})
    finally:
        drop_bucket(server, bucket)


TARGETS: dict[str, TargetFactory] = {"gcs": _gcs}
