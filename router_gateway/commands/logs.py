"""``router-gateway logs export``: the request log with feedback, as JSONL (router training input)."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("logs", help="work with the request log")
    sub = p.add_subparsers(dest="logs_command", metavar="ACTION")
    e = sub.add_parser("export", help="write records with their feedback as JSONL")
    e.add_argument("--config", default="experts.yaml", help="read the log path from this config")
    e.add_argument("--db", help="log database path (overrides --config)")
    e.add_argument("--out", default="-", help="output file (default: stdout)")
    e.add_argument("--since", type=float, help="only records at or after this UNIX time")
    e.set_defaults(func=run_export)
    c = sub.add_parser("count", help="print the number of logged requests")
    c.add_argument("--config", default="experts.yaml")
    c.add_argument("--db")
    c.set_defaults(func=run_count)


def _db_path(args: argparse.Namespace) -> str:
    if args.db:
        return args.db
    from router_gateway.domain.config import load_config
    return load_config(args.config).logging.path


def run_export(args: argparse.Namespace) -> int:
    import orjson

    from router_gateway.state.request_log import export_records

    out = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")
    n = 0
    try:
        for record in export_records(_db_path(args), args.since):
            out.write(orjson.dumps(record) + b"\n")
            n += 1
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    print(f"exported {n} records", file=sys.stderr)
    return 0


def run_count(args: argparse.Namespace) -> int:
    from router_gateway.state.request_log import count_records
    print(count_records(_db_path(args)))
    return 0
