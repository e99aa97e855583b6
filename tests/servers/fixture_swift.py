"""``swift_server``: a real OpenStack Swift all-in-one, shared by the whole test session.

What runs
    Debian's Swift (packages ``swift swift-proxy swift-account swift-container swift-object
    memcached``, installed by ``scripts/install-test-servers.sh``) under ``/usr/bin/python3``:
    a proxy with ``tempauth`` and the ``s3api`` middleware (Swift's own S3 layer), one
    account, one container and one object server (1 replica, 1 device, rings built at
    start-up), and memcached (tempauth keeps its tokens there).  The proxy pipeline also has
    ``bulk tempurl copy slo dlo versioned_writes symlink``, so Static and Dynamic Large
    Objects, server-side copy, symlinks and versioning are the real thing.  Constraints are
    Swift's defaults (``max_file_size`` 5 GiB + 2 bytes, metadata values <= 256 bytes,
    <= 90 metadata items, <= 4096 bytes of metadata per object), as on a real cluster.

Where
    Everything is on 127.0.0.1, on five free ports chosen at start-up, under the session's
    ``servers/swift/`` directory (configs and rings in ``etc/``, data in ``srv/node/d1``,
    logs in ``log/``: one file per server plus ``syslog.log``).  Nothing is written to
    /etc/swift, so several test sessions can run on one machine at once.  Start-up takes
    about 1-2 s (one interpreter imports Swift once and forks the four servers); the
    controller stops it by PID at the end of the session (``tests/servers/_shared.py``).

What the fixture returns (a dict, the same in every xdist worker)
    ``auth_url``         tempauth v1 endpoint, ``http://127.0.0.1:P/auth/v1.0``
    ``user``, ``key``    ``"test:tester"``, ``"testing"`` (account ``AUTH_test``, .admin)
    ``storage_url``      ``http://127.0.0.1:P/v1/AUTH_test``
    ``users``            every tempauth user: ``{"test:tester": {"key": ..., "storage_url":
                         ...}, "test2:tester2": {...}}`` (a second account, for ACL tests)
    ``proxy_url``        ``http://127.0.0.1:P`` (``/info`` lists the capabilities)
    ``s3_endpoint``      the same proxy: the S3 layer answers path-style requests there
    ``s3_access_key``    ``"test:tester"`` (the tempauth user is the S3 access key)
    ``s3_secret_key``    ``"testing"`` (its tempauth key is the S3 secret)
    ``s3_region``        ``"us-east-1"``
    ``max_file_size``    the largest single object the cluster takes
    ``workdir``, ``log_dir``
    ``pid``, ``more_pids``  the launcher (process-group leader) and memcached + 4 servers

Use it from Swift clients with ``auth_version="1"``; from boto3 with path-style
addressing (the fixture's S3 layer has no virtual-host domain) and add ``Content-MD5`` to
DeleteObjects (Swift's S3 layer refuses it without; recent boto3 no longer sends it).
Each test should use its own container / bucket: the server is shared by all tests.

``tests.servers._swift.launch_swift(workdir, max_file_size=...)`` (import it from there, not
from this plugin module) starts a private instance with other
constraints (for a test module that needs, say, a 10 MiB ``max_file_size``); stop it with
``tests.servers._shared.kill_group(info["pid"])``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.servers._shared import shared_server
from tests.servers._swift import (  # noqa: F401 - re-exported for other fixture modules
    KEY,
    LAUNCHER,
    REAL_MAX_FILE_SIZE,
    SWIFT_PYTHON,
    USER,
    USERS,
    _ready,
    launch_swift,
    ready,
)


@pytest.fixture(scope="session")
def swift_server(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A running Swift all-in-one (tempauth v1 + S3 layer); see the module docstring."""
    return shared_server(tmp_path_factory, "swift", launch_swift)
