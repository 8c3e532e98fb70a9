"""``router-gateway onboard``: add a new expert to a cluster router artifact from graded probe prompts."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("onboard", help="onboard a new expert into a cluster artifact from probes",
                              description="Run probe prompts through EXPERT, grade them and add the expert "
                                          "to a cluster router artifact without refitting it.")
    p.add_argument("expert", metavar="EXPERT", help="the new expert's name (as in experts.yaml)")
    p.add_argument("--probes", required=True, metavar="PROBES.csv", help="CSV with prompt and reference columns")
    p.add_argument("--artifact", required=True, help="cluster artifact directory")
    p.add_argument("--config", metavar="experts.yaml",
                   help="experts.yaml defining EXPERT, called as the gateway calls it (provider, model, key, timeouts)")
    p.add_argument("--base-url", help="OpenAI-compatible base url (instead of --config)")
    p.add_argument("--model", help="served model name (with --base-url; default: EXPERT)")
    p.add_argument("--judge", metavar="EXPERT", help="grade with this expert (from --config) instead of the reference")
    p.add_argument("--out", help="write the new artifact here (default: replace --artifact)")
    p.add_argument("--embedder", default="auto", help="embedder backend: auto, onnx, torch")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from router_gateway.domain.config_yaml import ConfigError
    from router_gateway.training.onboarding import (
        Endpoint,
        config_for_endpoint,
        config_from_yaml,
        onboard,
    )
    from router_gateway.training.pipeline import embed_prompts
    from routers.base import RouterError

    if not args.base_url and not args.config:
        print("error: give --config experts.yaml or --base-url", file=sys.stderr)
        return 2
    if args.judge and not args.config:
        print("error: --judge needs --config", file=sys.stderr)
        return 2
    try:
        if args.base_url:
            ep = Endpoint(args.base_url.rstrip("/"), args.model or args.expert, os.environ.get("OPENAI_API_KEY"))
            config = config_for_endpoint(args.expert, ep)
            if args.judge:  # the judge comes from experts.yaml, the new expert from the URL
                config.experts[args.judge] = config_from_yaml(args.config, args.judge).experts[args.judge]
        else:
            config = config_from_yaml(args.config, args.expert, args.judge)
        result = onboard(args.expert, args.probes, args.artifact, config, out=args.out, judge=args.judge,
                         embed=lambda prompts: embed_prompts(prompts, args.embedder))
    except (RouterError, ConfigError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
