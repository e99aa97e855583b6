"""The ``backend`` fixture: a fresh, empty namespace of every backend the suite knows.

A backend joins the conformance suite by adding a factory to ``FACTORIES``: an async
context manager ``factory(ctx)`` that yields a connected ``Backend`` rooted at a prefix
(or bucket, or directory) no other test uses.  Factories that need a server ask for its
session fixture through ``ctx.request.getfixturevalue``.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from storefs.backends.base import Backend
from storefs.backends.file import FileBackend
from storefs.backends.mem import MemBackend


@dataclass
class FactoryContext:
    request: pytest.FixtureRequest
    tmp_path: Path
    name: str


Factory = Callable[[FactoryContext], AbstractAsyncContextManager[Backend]]

_counter = itertools.count()


@contextlib.asynccontextmanager
async def _mem(ctx: FactoryContext) -> AsyncIterator[Backend]:
    # a small page size so that paging is exercised with a handful of objects
    backend = MemBackend("conformance", f"{ctx.name}/", page_size=7)
    await backend.connect()
    yield backend
    await backend.aclose()


@contextlib.asynccontextmanager
async def _file(ctx: FactoryContext) -> AsyncIterator[Backend]:
    root = ctx.tmp_path / "store"
    root.mkdir()
    backend = FileBackend(root, page_size=7)
    await backend.connect()
    yield backend
    await backend.aclose()


def _discover() -> dict[str, Factory]:
    """mem and file, plus the ``FACTORIES`` of every ``tests/backends/factory_*.py``."""
    found: dict[str, Factory] = {"mem": _mem, "file": _file}
    for path in sorted(Path(__file__).parent.glob("factory_*.py")):
        module = importlib.import_module(f"tests.backends.{path.stem}")
        found.update(module.FACTORIES)
    return found


#: every backend of the conformance suite
FACTORIES: dict[str, Factory] = _discover()


@pytest.fixture(params=list(FACTORIES))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    ctx = FactoryContext(request, tmp_path, f"t{next(_counter)}")
    async with FACTORIES[request.param](ctx) as b:
        yield b
