"""``router-gateway check-config FILE``: print the resolved registry, or the errors (exit 1)."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("check-config", help="validate experts.yaml and print the resolved registry")
    p.add_argument("file")
    p.add_argument("--load-routers", action="store_true",
                   help="also load router artifacts and check them against the embedder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from router_gateway.domain.config import load_config, redacted
    from router_gateway.domain.config_yaml import ConfigError

    try:
        config = load_config(args.file)
        if args.load_routers:
            from router_gateway.embedding.factory import make_embedder
            from router_gateway.routing.router_set import build_router_set
            e = config.embedder
            embedder = make_embedder(e.backend, model=e.model, url=e.url, api_key=e.api_key, dim=e.dim)
            build_router_set(config, embedder.info)
    except ConfigError as exc:
        print(f"{args.file}: invalid\n{exc}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(redacted(config), sort_keys=False), end="")
    print(f"# ok: {len(config.experts)} experts, {len(config.routers)} routers, {len(config.profiles)} profiles",
          file=sys.stderr)
    return 0
