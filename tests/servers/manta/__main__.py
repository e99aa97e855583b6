"""``python -m tests.servers.manta``: run the Manta test server in the foreground."""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from pathlib import Path
from typing import Any

from tests.servers.manta.auth import Verifier, load_accounts
from tests.servers.manta.server import Config, MantaHTTPServer
from tests.servers.manta.store import Store


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.servers.manta", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    p.add_argument("--port-file", type=Path, help="write the port here once listening")
    p.add_argument("--root", type=Path, required=True, help="where data and namespace live")
    p.add_argument("--user", help="account login (with --key)")
    p.add_argument("--key", action="append", default=[], type=Path,
                   help="OpenSSH public key file of --user (repeatable)")
    p.add_argument("--accounts", type=Path,
                   help="JSON file of accounts, sub-users, roles and keys")
    p.add_argument("--v2", action="store_true", help="behave as Manta v2 (no SnapLinks)")
    p.add_argument("--clock-skew", type=float, default=300.0, help="allowed skew, seconds")
    p.add_argument("--max-request-age", type=float, default=300.0,
                   help="Date older than this is RequestExpired, seconds")
    p.add_argument("--no-inm-star-quirk", action="store_true",
                   help="If-None-Match: * matches only existing objects")
    p.add_argument("--tls-cert", type=Path)
    p.add_argument("--tls-key", type=Path)
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config: dict[str, Any] = {"accounts": {}}
    if args.accounts:
        config = json.loads(args.accounts.read_text())
    if args.user:
        acct = config["accounts"].setdefault(args.user, {})
        acct.setdefault("keys", []).extend(k.expanduser().read_text().strip()
                                           for k in args.key)
    if not config["accounts"]:
        print("manta server: give --user and --key, or --accounts", file=sys.stderr)
        return 2
    accounts = load_accounts(config)
    verifier = Verifier(accounts, max_request_age=args.max_request_age,
                        clock_skew=args.clock_skew)
    args.root.mkdir(parents=True, exist_ok=True)
    store = Store(args.root)
    for login in accounts:
        store.ensure_account(login)
    cfg = Config(args.root, verifier, version=2 if args.v2 else 1,
                 inm_star_quirk=not args.no_inm_star_quirk)
    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    server = MantaHTTPServer((args.host, args.port), cfg, store, verbose=args.verbose, tls=tls)
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.replace(args.port_file)
    scheme = "https" if tls else "http"
    print(f"manta test server (v{cfg.version}) on {scheme}://{args.host}:{port}, "
          f"data in {args.root}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
