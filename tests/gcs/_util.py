"""Helpers shared by the GCS tests and the conformance factory: buckets on the emulator."""

from __future__ import annotations

import uuid
from typing import Any

from storefs.backends.gcs import GcsBackend


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
    """The backend on the emulator, anonymous, as ``-o endpoint=...,anonymous`` makes it."""
    return GcsBackend(bucket, prefix, endpoint=server["endpoint"], anonymous=True, **kw)
