"""``router-gateway learning status|retrain|promote|revert``: watch and steer a running gateway's
learning loop (labels from shadow answers, retrain, gate, promote); ``export`` writes the labels in
the routing-table format from the log database, without a running gateway."""
from __future__ import annotations

import argparse
import json
import os
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("learning", help="the learning loop: status, retrain, promote, revert, export")
    p.add_argument("action", choices=["status", "retrain", "promote", "revert", "export"])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--key", default=os.environ.get("ROUTER_GATEWAY_ADMIN_KEY"),
                   help="admin API key (default: $ROUTER_GATEWAY_ADMIN_KEY)")
    p.add_argument("--config", default="experts.yaml", help="export: experts.yaml (names the log database)")
    p.add_argument("--out", default="labels.csv", help="export: the CSV to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "export":
        return export(args)
    import httpx

    headers = {"authorization": f"Bearer {args.key}"} if args.key else {}
    path = "/admin/learning" + ("" if args.action == "status" else f"/{args.action}")
    try:
        response = httpx.request("GET" if args.action == "status" else "POST", args.url.rstrip("/") + path,
                                 headers=headers, timeout=600)
    except httpx.HTTPError as exc:
        print(f"learning {args.action}: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(response.json(), indent=2))
    except ValueError:
        print(response.text)
    return 0 if response.status_code == 200 else 1


def export(args: argparse.Namespace) -> int:
    from router_gateway.domain.config import load_config
    from router_gateway.learning.store import LabelStore

    config = load_config(args.config)
    store = LabelStore(config.logging.path)
    try:
        n = store.export_csv(args.out, list(config.experts))
    finally:
        store.close()
    print(f"{n} labelled prompts written to {args.out}")
    return 0
