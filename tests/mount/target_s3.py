"""S3 targets of the mounted-tool tests: moto, and the S3 layer of the Swift all-in-one.

Each target is a fresh prefix of one bucket per server.  Credentials reach the mount the
way users give them, through ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``; the
endpoint and region are ``-o`` options.  The data is left behind: the servers are thrown
away at the end of the session.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from tests.mount._target import MountTarget, TargetContext, TargetFactory
from tests.s3._helpers import S3Server, ensure_bucket, s3_server, unique

BUCKET = "storefs-mounts"


def mount_target(server: S3Server, bucket: str, prefix: str) -> MountTarget:
    """How to mount ``s3://bucket/prefix`` of ``server`` (also used by the S3 mount tests)."""
    options = server.options()
    env = {
        "AWS_ACCESS_KEY_ID": options.pop("access_key"),
        "AWS_SECRET_ACCESS_KEY": options.pop("secret_key"),
        # no instance-metadata lookups from a test machine, ever
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    source = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    lacks: dict[str, str] = {}
    if "max_metadata_value" in options:
        lacks["large_xattrs"] = (f"user metadata values of at most {options['max_metadata_value']}"
                                 " bytes on this server (docs/backends/s3.md)")
    return MountTarget(source=source, options=options, env=env, lacks=lacks)


def _factory(name: str) -> TargetFactory:
    @contextlib.contextmanager
    def factory(ctx: TargetContext) -> Iterator[MountTarget]:
        server = s3_server(ctx.request, name)
        ensure_bucket(server, BUCKET)
        prefix = unique(re.sub(r"[^A-Za-z0-9._-]+", "-", ctx.name).strip("-.") or "t")
        yield mount_target(server, BUCKET, prefix)

    return factory


TARGETS: dict[str, TargetFactory] = {"s3-moto": _factory("moto"), "s3-swift": _factory("swift")}
