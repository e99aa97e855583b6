"""The Swift all-in-one of ``_swift_aio.py`` with Keystone v3 auth in front of it.

usage: /usr/bin/python3 _swift_keystone_aio.py SPEC_JSON   (``_swift_aio``'s spec plus
``"keystone_url": "http://127.0.0.1:K"``)

Runs ``_swift_aio.main()`` unchanged but for one step: after its configs are written, the
proxy pipeline gets ``authtoken keystoneauth`` before ``tempauth`` (Swift's documented
order; tempauth keeps working beside it, which the readiness probe uses) and the two
filters' sections, with accounts ``KEY_<project id>``.  Like ``_swift_aio.py`` it runs under
Debian's /usr/bin/python3 and imports nothing from storefs or tests.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _swift_aio

_write_configs = _swift_aio.write_configs


def write_configs(spec: dict, etc: str, dev: str, cache: str, syslog: str) -> None:
    _write_configs(spec, etc, dev, cache, syslog)
    url = spec["keystone_url"]
    path = os.path.join(etc, "proxy-server.conf")
    with open(path) as f:
        text = f.read()
    text = text.replace(" tempauth ", " authtoken keystoneauth tempauth ", 1)
    text += f"""[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = {url}/v3
auth_url = {url}
auth_type = password
username = admin
password = admin
project_name = admin
user_domain_id = default
project_domain_id = default
delay_auth_decision = True
memcached_servers = 127.0.0.1:{spec["memcached"]}
[filter:keystoneauth]
use = egg:swift#keystoneauth
reseller_prefix = KEY_
operator_roles = admin, member
"""
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    json.loads(sys.argv[1])["keystone_url"]  # fail early on a spec without it
    _swift_aio.write_configs = write_configs
    sys.exit(_swift_aio.main())
