"""Swift all-in-one launcher, run by ``fixture_swift.py`` under Debian's ``/usr/bin/python3``.

usage: /usr/bin/python3 _swift_aio.py SPEC_JSON

SPEC_JSON: {"workdir": DIR, "proxy": P, "account": A, "container": C, "object": O,
"memcached": M, "max_file_size": N}.  The process writes configs and rings under DIR (never
/etc/swift), starts memcached, then forks the four Swift WSGI servers from one interpreter
that has already imported Swift (a fork costs nothing; four separate interpreters would each
spend ~0.5 s of CPU importing eventlet, paste and the middlewares on a 2-core machine).  It
writes DIR/run/pids.json, then supervises: when any server dies it stops the whole process
group, so a half-dead Swift never lingers.  The fixture stops it by killing the process group
(every server is in it).

This file runs outside the project's venv (Swift is a Debian package); it imports nothing
from storefs or tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

# tempauth accounts: user_<account>_<user> = <key> [groups]; the fixture returns them
USERS = {
    "test:tester": "testing",
    "test2:tester2": "testing2",
}


def write_configs(spec: dict, etc: str, dev: str, cache: str, syslog: str) -> None:
    me = pwd.getpwuid(os.geteuid()).pw_name
    with open(os.path.join(etc, "swift.conf"), "w") as f:
        f.write(f"""[swift-hash]
swift_hash_path_suffix = storefs-test-suffix
swift_hash_path_prefix = storefs-test-prefix
[storage-policy:0]
name = Policy-0
default = yes
[swift-constraints]
max_file_size = {spec["max_file_size"]}
""")
    common = f"""swift_dir = {etc}
devices = {dev}
mount_check = false
disable_fallocate = true
user = {me}
workers = 0
log_level = INFO
log_address = {syslog}
recon_cache_path = {cache}
"""
    # 1 MiB chunks instead of 64 KiB: twice the GET throughput on this kind of machine
    chunks = "network_chunk_size = 1048576\ndisk_chunk_size = 1048576\n"
    for name in ("account", "container", "object"):
        with open(os.path.join(etc, f"{name}-server.conf"), "w") as f:
            f.write(f"""[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {spec[name]}
log_name = {name}-server
{common}
[pipeline:main]
pipeline = healthcheck {name}-server
[app:{name}-server]
use = egg:swift#{name}
{chunks}
[filter:healthcheck]
use = egg:swift#healthcheck
""")
    users = "\n".join(
        f"user_{u.replace(':', '_')} = {k} .admin" for u, k in USERS.items()
    )
    # filters that need no settings: "[filter:NAME]\nuse = egg:swift#NAME" (the pipeline
    # spells proxy_logging with a dash, as Swift's sample configs do)
    plain = ("catch_errors", "gatekeeper", "healthcheck", "proxy_logging", "listing_formats",
             "bulk", "tempurl", "copy", "symlink")
    plain_sections = "".join(
        f"[filter:{n.replace('proxy_', 'proxy-')}]\nuse = egg:swift#{n}\n" for n in plain
    )
    pipeline = " ".join((
        "catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl",
        "s3api tempauth copy slo dlo versioned_writes symlink proxy-logging proxy-server",
    ))
    with open(os.path.join(etc, "proxy-server.conf"), "w") as f:
        f.write(f"""[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {spec["proxy"]}
log_name = proxy-server
{common}
[pipeline:main]
pipeline = {pipeline}
[app:proxy-server]
use = egg:swift#proxy
allow_account_management = true
account_autocreate = true
object_chunk_size = 1048576
client_chunk_size = 1048576
[filter:tempauth]
use = egg:swift#tempauth
{users}
[filter:s3api]
use = egg:swift#s3api
location = us-east-1
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{spec["memcached"]}
{plain_sections}
# no throttling of small segments (default: 1 segment/s after the 10th one below 1 MiB)
[filter:slo]
use = egg:swift#slo
rate_limit_segments_per_sec = 0
[filter:dlo]
use = egg:swift#dlo
rate_limit_segments_per_sec = 0
[filter:versioned_writes]
use = egg:swift#versioned_writes
allow_versioned_writes = true
""")


def build_rings(spec: dict, etc: str) -> None:
    # the RingBuilder that swift-ring-builder runs, in this process (9 CLI calls cost ~6 s CPU)
    from swift.common.ring import RingBuilder

    for name in ("account", "container", "object"):
        b = RingBuilder(6, 1, 1)  # part power, replicas, min_part_hours
        b.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1", "port": spec[name],
                   "device": "d1", "weight": 100})
        b.rebalance()
        b.get_ring().save(os.path.join(etc, f"{name}.ring.gz"))


def drain_syslog(path: str, out: str) -> socket.socket:
    """Swift logs to syslog; give it a private socket (no /dev/log, no UDP to :514) and keep
    what it says in a file."""
    with open(out, "ab"):
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)

    def run() -> None:
        with open(out, "ab", buffering=0) as f:
            while True:
                f.write(sock.recv(65536) + b"\n")

    threading.Thread(target=run, daemon=True).start()
    return sock


def main() -> int:
    spec = json.loads(sys.argv[1])
    workdir = spec["workdir"]
    etc, log, run = (os.path.join(workdir, d) for d in ("etc", "log", "run"))
    dev = os.path.join(workdir, "srv", "node")
    cache = os.path.join(workdir, "cache")
    for d in (etc, log, run, os.path.join(dev, "d1"), cache):
        os.makedirs(d, exist_ok=True)
    syslog = os.path.join(run, "log.sock")
    if os.path.exists(syslog):
        os.unlink(syslog)
    write_configs(spec, etc, dev, cache, syslog)

    from swift.common import utils

    # Swift reads /etc/swift/swift.conf unless told otherwise, and it must be told before
    # swift.common.storage_policy is imported (it loads the policies at import time)
    utils.SWIFT_CONF_FILE = os.path.join(etc, "swift.conf")
    build_rings(spec, etc)

    # import once here, so that every forked server starts with it all loaded
    import swift.account.server
    import swift.common.middleware.s3api.s3api
    import swift.common.middleware.slo
    import swift.common.middleware.tempauth
    import swift.container.server
    import swift.obj.server
    import swift.proxy.server  # noqa: F401
    from swift.common.wsgi import run_wsgi

    drain_syslog(syslog, os.path.join(log, "syslog.log"))
    me = pwd.getpwuid(os.geteuid()).pw_name
    with open(os.path.join(log, "memcached.log"), "wb") as mlog:
        memcached = subprocess.Popen(
            ["memcached", "-l", "127.0.0.1", "-p", str(spec["memcached"]), "-U", "0",
             "-m", "64", "-u", me],
            stdin=subprocess.DEVNULL, stdout=mlog, stderr=subprocess.STDOUT,
        )
    children = {memcached.pid: "memcached"}
    for name in ("account", "container", "object", "proxy"):
        server = f"{name}-server"
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fd = os.open(os.path.join(log, f"{server}.log"),
                             os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                # Swift's drop_privileges() calls setsid(), which would take the server out
                # of the launcher's process group and out of reach of the fixture's killpg
                os.setsid = lambda: None
                code = run_wsgi(os.path.join(etc, f"{server}.conf"), server) or 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        children[pid] = server
    with open(os.path.join(run, "pids.tmp"), "w") as f:
        json.dump({"launcher": os.getpid(), "children": {v: k for k, v in children.items()}}, f)
    os.replace(os.path.join(run, "pids.tmp"), os.path.join(run, "pids.json"))

    def stop(code: int) -> None:
        # reap what we started before going, so that "the launcher is gone" means "Swift is
        # gone" to whoever waits for it (and no zombies are left to init)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while children and time.monotonic() < deadline:
            for pid in list(children):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    del children[pid]
            time.sleep(0.02)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os._exit(code)

    signal.signal(signal.SIGTERM, lambda signum, frame: stop(0))
    # supervise: one server gone means the all-in-one is broken; take the rest down too
    while True:
        pid, status = os.wait()
        if pid in children:
            print(f"{children[pid]} (pid {pid}) exited with status {status}; stopping swift",
                  flush=True)
            del children[pid]
            stop(1)


if __name__ == "__main__":
    sys.exit(main())
