"""The GCS backend in the conformance suite, on fake-gcs-server.

Every test gets a fresh bucket (deleted again at its end), and the backend is rooted at a
prefix inside it, so the prefix handling (keys in, keys out, listings) is exercised by every
conformance test.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import trio

from storefs.backends.base import Backend
from tests.gcs._util import drop_bucket, gcs_backend, new_bucket

if TYPE_CHECKING:  # conftest imports this module: no import cycle at run time
    from tests.backends.conftest import Factory, FactoryContext


@contextlib.asynccontextmanager
async def _gcs(ctx: FactoryContext) -> AsyncIterator[Backend]:
    server = ctx.request.getfixturevalue("gcs_server")
    bucket = await trio.to_thread.run_sync(new_bucket, server)
    backend = gcs_backend(server, bucket, "root/")
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.aclose()
        await trio.to_thread.run_sync(drop_bucket, server, bucket)


FACTORIES: dict[str, Factory] = {"gcs": _gcs}
