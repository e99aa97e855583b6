"""The GCS backend in the conformance suite, on fake-gcs-server.

Every test gets a fresh bucket (deleted again at its end), and the backend is rooted at a
prefix inside it, so the prefix handling (keys in, keys out, listings) is exercised by every
conformance test.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import trio

from storefs.backends.base import Backend
from storefs.backends.gcs import GcsBackend
from tests.backends.conftest import Factory, FactoryContext


def sdk_client(server: dict[str, Any]) -> Any:
    """A plain google-cloud-storage client on the emulator: what other tools would use."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": server["endpoint"]})


def new_bucket(server: dict[str, Any]) -> str:
    """Create an empty bucket of a unique name on the emulator."""
    name = f"storefs-{uuid.uuid4().hex[:16]}"
    sdk_client(server).create_bucket(name, retry=None)
    return name


def drop_bucket(server: dict[str, Any], name: str) -> None:
    """Delete a bucket and everything in it (the emulator keeps objects in memory)."""
    bucket = sdk_client(server).bucket(name)
    for blob in bucket.list_blobs(retry=None):
        blob.delete(retry=None)
    bucket.delete(retry=None)


def gcs_backend(server: dict[str, Any], bucket: str, prefix: str = "", **kw: Any) -> GcsBackend:
    return GcsBackend(bucket, prefix, endpoint=server["endpoint"], anonymous=True, **kw)


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
