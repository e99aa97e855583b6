"""Session-wide fixtures: the real local servers (started lazily, once per session)."""

from pathlib import Path

_HERE = Path(__file__).parent

pytest_plugins = [
    name
    for name in ("tests.servers.fixtures", "tests.servers.manta.fixture")
    if (_HERE.parent / (name.replace(".", "/") + ".py")).exists()
]
