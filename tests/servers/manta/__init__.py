"""A Manta-compatible storage server for the storefs tests (and for demos by hand).

    python -m tests.servers.manta --port 8080 --root /tmp/manta --user jill \\
        --key ~/.ssh/id_rsa.pub [--v2]

See ``server.py`` for what it implements and ``tests/servers/fixture_manta.py`` for how the
test session starts it.
"""
