"""Fixtures of the GCS-specific tests: a fresh bucket on fake-gcs-server per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio

from storefs.backends.gcs import GcsBackend
from tests.gcs._util import drop_bucket, gcs_backend, new_bucket, sdk_client


@pytest.fixture
def bucket(gcs_server: dict[str, Any]) -> Iterator[str]:
    name = new_bucket(gcs_server)
    yield name
    drop_bucket(gcs_server, name)


@pytest.fixture
def sdk_bucket(gcs_server: dict[str, Any], bucket: str) -> Any:
    """The same bucket through the plain SDK, as gsutil or gcsfuse would see it."""
    return sdk_client(gcs_server).bucket(bucket)


@pytest.fixture
async def gcs(gcs_server: dict[str, Any], bucket: str) -> AsyncIterator[GcsBackend]:
    backend = gcs_backend(gcs_server, bucket)
    await backend.connect()
    yield backend
    await backend.aclose()


async def in_thread(fn: Any, *args: Any) -> Any:
    return await trio.to_thread.run_sync(fn, *args)
