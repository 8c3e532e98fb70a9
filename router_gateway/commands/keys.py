"""``router-gateway keys create|list|revoke``: manage API keys (stored as hashes; see router_gateway.state.keys)."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("keys", help="create, list or revoke API keys")
    p.add_argument("--config", default="experts.yaml",
                   help="experts.yaml whose request-log folder holds keys.json (default: %(default)s)")
    p.add_argument("--file", default=None, help="the key file (default: $ROUTER_GATEWAY_KEYS or beside the log)")
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a key and print its secret once")
    create.add_argument("--name", default="")
    create.add_argument("--scope", action="append", choices=["admin", "user"],
                        help="admin (reload, key management) and/or user (default: user)")
    create.add_argument("--rpm", type=int, help="requests per minute (0 suspends the key)")
    create.add_argument("--tpm", type=int, help="tokens per minute (0 suspends the key)")
    create.add_argument("--budget-day", type=float, help="USD per UTC day (0 suspends the key)")
    create.add_argument("--budget-month", type=float, help="USD per UTC month (0 suspends the key)")
    create.add_argument("--experts", default="", help="comma-separated experts this key may use (default: all)")
    create.add_argument("--profiles", default="", help="comma-separated profiles this key may use (default: all)")
    create.add_argument("--json", action="store_true", help="print the key as JSON")
    sub.add_parser("list", help="list keys (never their secrets)")
    revoke = sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from router_gateway.state.keys import KeyFileError, KeyStore, default_keys_path

    store = KeyStore(args.file or default_keys_path(args.config))
    try:
        return _run(args, store)
    except (KeyFileError, ValueError) as exc:  # a bad limit, or a keys file we must not overwrite
        print(f"keys: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, store) -> int:
    import orjson

    if args.keys_command == "create":
        split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())  # noqa: E731
        secret, key = store.create(args.name, tuple(args.scope or ("user",)), rpm=args.rpm, tpm=args.tpm,
                                   budget_usd_day=args.budget_day, budget_usd_month=args.budget_month,
                                   allowed_experts=split(args.experts), allowed_profiles=split(args.profiles))
        if args.json:
            print(orjson.dumps({"secret": secret, **key.public()}).decode())
        else:
            print(f"created {key.id} ({', '.join(key.scopes)}) in {store.path}")
            print(f"secret (shown once, store it now): {secret}")
        return 0
    if args.keys_command == "list":
        keys = store.list()
        if not keys:
            print(f"no keys in {store.path}")
        for k in keys:
            state = "revoked" if k.revoked else "active"
            limits = ", ".join(f"{n}={v}" for n, v in [("rpm", k.rpm), ("tpm", k.tpm),
                                                        ("usd/day", k.budget_usd_day),
                                                        ("usd/month", k.budget_usd_month)] if v is not None)
            print(f"{k.id}\t{state}\t{','.join(k.scopes)}\t{k.display}\t{k.name}\t{limits}")
        return 0
    if store.revoke(args.key_id):
        print(f"revoked {args.key_id}")
        return 0
    print(f"keys: no active key {args.key_id} in {store.path}", file=sys.stderr)
    return 1
