"""The conformance suite on Manta: the test server as v1 (SnapLinks) and v2 (copies)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from storefs.backends.base import Backend
from storefs.backends.manta import MantaBackend, settings_from
from storefs.source import parse_source
from tests.backends.conftest import Factory, FactoryContext


def _factory(fixture: str) -> Factory:
    @contextlib.asynccontextmanager
    async def factory(ctx: FactoryContext) -> AsyncIterator[Backend]:
        server = ctx.request.getfixturevalue(fixture)
        base = server.fresh_dir("conformance")
        # no environment or config file: only what the test server knows
        settings = settings_from(parse_source(f"manta:{base}"), server.options(),
                                 environ={}, section={})
        # a small page so that paging and the inclusive marker are exercised
        backend = MantaBackend(settings, page_size=7)
        await backend.connect()
        try:
            yield backend
        finally:
            await backend.aclose()

    return factory


FACTORIES: dict[str, Factory] = {
    "manta": _factory("manta_server"),
    "manta-v2": _factory("manta_v2_server"),
}
