"""``router-gateway ope``: off-policy estimate of a candidate router artifact from request logs."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("ope", help="off-policy estimate of a router artifact's quality and cost",
                              description="Estimate a candidate router's quality and cost from logs written "
                                          "by another (exploring) routing policy: IPS, SNIPS, doubly robust.")
    p.add_argument("--logs", required=True, metavar="LOGS.jsonl", help="JSONL from `router-gateway logs export`")
    p.add_argument("--artifact", required=True, help="the candidate router's artifact directory")
    p.add_argument("--cost-weight", type=float, default=0.0, help="the profile's cost weight (USD units)")
    p.add_argument("--embedder", default="auto", help="embedder backend: auto, onnx, torch")
    p.add_argument("--json", metavar="PATH", help="also write the estimates as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from router_gateway.training.data import load_logs
    from router_gateway.training.ope_report import estimate, render
    from router_gateway.training.pipeline import (
        check_artifact_compatible,
        embed_prompts,
    )
    from routers.artifact import load_artifact
    from routers.base import RouterError

    try:
        router, meta = load_artifact(args.artifact)
        data = load_logs(args.logs, list(meta["experts"]))
        if data.skipped:
            print(f"[ope] skipped rows: {json.dumps(data.skipped)}", file=sys.stderr)
        if not data.prompts:
            print("error: no usable logged rows", file=sys.stderr)
            return 1
        X, info = embed_prompts(data.prompts, args.embedder)
        check_artifact_compatible(meta, info, list(meta["experts"]))
        result = estimate(router, X, data, args.cost_weight)
    except (RouterError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(render(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0
