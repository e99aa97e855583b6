"""Session-wide fixtures: the real local servers (started lazily, once per session)."""

import importlib.util

pytest_plugins = [
    name
    for name in ("tests.servers.fixtures", "tests.servers.manta.fixture")
    if importlib.util.find_spec(name) is not None
]
