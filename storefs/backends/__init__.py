"""Backend registry: a scheme names a module here; the module is imported only when used.

Each backend module defines

``OPTIONS: dict[str, str]``
    the ``-o`` options it accepts (name -> one-line help), so unknown options are refused
    before mounting;
``def open_backend(source: Source, options: Mapping[str, str]) -> Backend``
    which builds the backend from the source, the options and the environment without
    touching the network (``Backend.connect`` does that).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType

from storefs.backends.base import Backend
from storefs.errors import ConfigError
from storefs.source import Source


def backend_module(source: Source) -> ModuleType:
    name = source.backend_module
    try:
        return importlib.import_module(f"storefs.backends.{name}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("storefs.backends"):
            raise ConfigError(f"{source.scheme}: this backend is not available yet") from exc
        raise ConfigError(
            f"{source.scheme}: missing Python package {exc.name!r}; "
            f"install it with: pip install 'storefs[all]'"
        ) from exc


def backend_options(source: Source) -> dict[str, str]:
    """The ``-o`` options the source's backend accepts."""
    options: dict[str, str] = backend_module(source).OPTIONS
    return options


def open_backend(source: Source, options: Mapping[str, str]) -> Backend:
    """Build (without connecting) the backend for ``source``."""
    backend: Backend = backend_module(source).open_backend(source, options)
    return backend
