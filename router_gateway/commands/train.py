"""``router-gateway train``: fit a router from request logs or a bench table and write an artifact."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a router from logs or a benchmark table",
                              description="Fit a router and write an artifact directory (arrays + meta.json).")
    p.add_argument("--router", required=True, help="registered router type (knn, cluster, classifier, ...)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-logs", metavar="LOGS.jsonl", help="JSONL from `router-gateway logs export`")
    src.add_argument("--from-table", metavar="TABLE.csv", help="a bench table (prompt, score:<m>, cost:<m>)")
    src.add_argument("--from-labels", metavar="LABELS.csv",
                     help="--router domain only: prompts labelled with domains (e.g. ../shared/data/domain/); "
                          "experts and their `domains` come from --experts (MoDEM-style map)")
    p.add_argument("--label-column", help="--from-labels: the label column (default: first of domain, task, "
                                          "subject, category, label)")
    p.add_argument("--experts", metavar="experts.yaml", help="expert list (columns / domains) from this file")
    p.add_argument("--out", required=True, help="artifact directory to write")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="router hyperparameter (JSON value or plain string); repeatable")
    p.add_argument("--embedder", default="auto", help="embedder backend: auto, onnx, torch")
    p.set_defaults(func=run)


def parse_params(items: list[str]) -> dict:
    """``k=v`` pairs; values parse as JSON when they can (numbers, lists, booleans), else stay strings."""
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--param {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def run(args: argparse.Namespace) -> int:
    from router_gateway.training.data import (
        load_bench_table,
        load_logs,
        read_experts_yaml,
    )
    from router_gateway.training.pipeline import embed_prompts, train_and_save
    from routers.base import RouterError
    from routers.registry import make_router

    if args.from_labels:
        return _train_domain_map(args)
    try:
        experts = list(read_experts_yaml(args.experts)) if args.experts else None
        data = load_logs(args.from_logs, experts) if args.from_logs else load_bench_table(args.from_table, experts)
        if data.skipped:
            print(f"[train] skipped rows: {json.dumps(data.skipped)}", file=sys.stderr)
        if not data.prompts:
            print("error: no usable training rows (need prompt text and a feedback score)", file=sys.stderr)
            return 1
        router = make_router(args.router).set_params(**parse_params(args.param))  # unknown keys: RouterError
        X, info = embed_prompts(data.prompts, args.embedder)
        path, metrics = train_and_save(router, X, data, args.out, info)
    except (RouterError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({args.router}, {metrics['n_prompts']} prompts, {len(data.experts)} experts, "
          f"fit {metrics['fit_seconds']}s, train mse {metrics['train_mse']:.4f})")
    return 0


def _train_domain_map(args: argparse.Namespace) -> int:
    """A domain router whose domain -> expert map is the experts' ``domains`` in experts.yaml."""
    import numpy as np

    from router_gateway.training.data import (
        file_digest,
        load_labelled_prompts,
        read_experts_yaml,
    )
    from router_gateway.training.pipeline import embed_prompts
    from routers.artifact import save_artifact
    from routers.base import RouterError
    from routers.domain import DomainRouter

    if args.router != "domain":
        print(f"error: --from-labels trains a domain router, not {args.router!r}", file=sys.stderr)
        return 2
    if not args.experts:
        print("error: --from-labels needs --experts experts.yaml (the experts and their domains)", file=sys.stderr)
        return 2
    try:
        spec = read_experts_yaml(args.experts)
        expert_domains = {name: [str(d) for d in (e.get("domains") or [])] for name, e in spec.items()}
        prompts, labels = load_labelled_prompts(args.from_labels, args.label_column)
        X, info = embed_prompts(prompts, args.embedder)
        router = DomainRouter.from_domain_map(X, labels, list(spec), expert_domains, **parse_params(args.param))
        accuracy = float(np.mean(np.asarray(router.predict_domain(X)) == np.asarray(labels)))
        extra = {"source": {"path": str(args.from_labels), "sha256": file_digest(args.from_labels),
                            "kind": "labels"},
                 "data_sha256": file_digest(args.from_labels),
                 "domain_map": {"experts_yaml": str(args.experts), "expert_domains": expert_domains},
                 "training_metrics": {"n_prompts": len(prompts), "n_domains": len(router.domains_),
                                      "train_accuracy": round(accuracy, 4)}}
        path = save_artifact(router, args.out, embedder=info, extra=extra)
    except (RouterError, TypeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path} (domain, {len(prompts)} prompts, {len(router.domains_)} domains, "
          f"{len(spec)} experts, train accuracy {accuracy:.3f})")
    return 0
