"""``router-gateway reload``: ask a running gateway to re-read experts.yaml."""
from __future__ import annotations

import argparse
import os
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("reload", help="make a running gateway re-read its config")
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--key", default=os.environ.get("ROUTER_GATEWAY_ADMIN_KEY"),
                   help="admin API key (default: $ROUTER_GATEWAY_ADMIN_KEY)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import httpx

    headers = {"authorization": f"Bearer {args.key}"} if args.key else {}
    try:
        response = httpx.post(args.url.rstrip("/") + "/admin/reload", headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        print(f"reload: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    print(response.text)
    return 0 if response.status_code == 200 else 1
