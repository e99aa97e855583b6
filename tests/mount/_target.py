"""What a backend provides to the mounted-tool tests.

Every ``tests/mount/target_*.py`` module defines ``TARGETS: dict[str, TargetFactory]``;
``tests/mount/conftest.py`` collects them (with the built-in ``mem`` and ``file`` targets)
and runs every mounted test once per target.  A factory is a *synchronous* context
manager: given a ``TargetContext`` it prepares a fresh, empty place in its store (a new
bucket, prefix, container or directory named after ``ctx.name``), yields a
``MountTarget`` that says how to mount it, and cleans up afterwards (it may leave the data
if the server is thrown away at the end of the session anyway).

Servers come from their session fixtures: ``ctx.request.getfixturevalue("moto_server")``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class TargetContext:
    request: pytest.FixtureRequest
    tmp_path: Path
    #: unique per test and target: use it as the bucket / prefix / directory name
    name: str


@dataclass
class MountTarget:
    #: what the user types: ``s3://bucket/prefix``, ``manta:/jill/stor/x``...
    source: str
    #: ``-o`` options (endpoint, credentials in tests...), joined as ``k=v,k2=v2``
    options: dict[str, str] = field(default_factory=dict)
    #: environment for the ``storefs mount`` process (MANTA_*, AWS_*, OS_*...)
    env: dict[str, str] = field(default_factory=dict)
    #: features the store lacks, so a test that needs one is skipped with this reason
    #: (e.g. {"hardlinks": "..."}); keep it empty unless docs/SEMANTICS.md says so
    lacks: dict[str, str] = field(default_factory=dict)


TargetFactory = Callable[[TargetContext], AbstractContextManager[MountTarget]]
