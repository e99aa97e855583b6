"""The S3 backend in the conformance suite, on two real S3 servers: moto, and the S3 layer
of the Swift all-in-one.  Each test gets a fresh prefix of one shared bucket per server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from storefs.backends.base import Backend
from tests.backends.conftest import FactoryContext
from tests.s3._helpers import backend_for, ensure_bucket, s3_server, unique

BUCKET = "storefs-conformance"


def _factory(name: str) -> Callable[[FactoryContext], AbstractAsyncContextManager[Backend]]:
    @contextlib.asynccontextmanager
    async def factory(ctx: FactoryContext) -> AsyncIterator[Backend]:
        server = s3_server(ctx.request, name)
        ensure_bucket(server, BUCKET)
        backend = backend_for(server, BUCKET, unique(ctx.name))
        await backend.connect()
        try:
            yield backend
        finally:
            await backend.aclose()

    return factory


FACTORIES = {"s3-moto": _factory("moto"), "s3-swift": _factory("swift")}
