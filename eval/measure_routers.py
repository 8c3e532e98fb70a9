"""Measure routers on a bench table with the eval harness's protocol and metrics (issue 5).

    python -m eval.measure_routers TABLE.csv --routers knn,cluster,stacked [--onboarding]

5-fold CV on the table's ``fold`` column, pooled out-of-fold predictions, ``eval.metrics`` for auc
etc. ``--onboarding``: the cluster router trained on all models vs. trained on 6 (the first models
of the table minus 3 held out) with the held-out ones onboarded from a probe share of the training
prompts (``--probe-share``, default 5%). A developer tool: it imports ``eval`` lazily, so the
gateway's import graph (router_gateway -> routers) is unchanged.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def cached_rows(table, backend: str = "torch") -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``table`` whose embeddings are already in the disk cache, and those embeddings."""
    import sqlite3

    from router_gateway.embedding.disk_cache import default_cache_dir, text_digest

    db = sqlite3.connect(default_cache_dir() / f"embeddings-all-MiniLM-L6-v2-{backend}-384.sqlite")
    found = {d: np.frombuffer(v, dtype=np.float32) for d, v in db.execute("SELECT digest, vec FROM emb")}
    db.close()
    digests = [text_digest(p) for p in table.prompts]
    rows = np.array([i for i, d in enumerate(digests) if d in found], dtype=np.int64)
    return rows, np.stack([found[digests[i]] for i in rows]) if len(rows) else np.zeros((0, 384), np.float32)


def onboarding(table, X, held_out: list[str], probe_share: float, seed: int = 0,
               params: dict | None = None) -> dict[str, float]:
    """auc of cluster trained on all models vs. on the rest with ``held_out`` onboarded from probes."""
    from eval import metrics as M
    from routers.cluster import ClusterRouter

    true, cost = table.scores, table.costs
    base = M.baselines(true, cost, table.models)
    grid = M.cost_weight_grid(cost)
    keep = [m for m in table.models if m not in held_out]
    pred_all, pred_onb = np.full(true.shape, np.nan), np.full(true.shape, np.nan)
    rng = np.random.default_rng(seed)
    n_probes = 0
    for f in np.unique(table.folds):
        te, tr = table.folds == f, np.flatnonzero(table.folds != f)
        full = ClusterRouter(**(params or {})).fit(X[tr], true[tr], cost=cost[tr], experts=table.models)
        pred_all[te] = full.predict_scores(X[te])
        cols = [table.models.index(m) for m in keep]
        part = ClusterRouter(**(params or {})).fit(X[tr], true[tr][:, cols], experts=keep)
        probes = rng.choice(tr, size=max(1, int(round(probe_share * len(table)))), replace=False)
        n_probes = len(probes)
        for m in held_out:
            part.add_expert(m, X[probes], true[probes, table.models.index(m)])
        order = [part.experts_.index(m) for m in table.models]
        pred_onb[te] = part.predict_scores(X[te])[:, order]
    out = {}
    for name, pred in (("cluster_all", pred_all), ("cluster_onboarded", pred_onb)):
        front, _ = M.sweep(pred, true, cost, grid)
        out[name] = M.frontier_metrics(front, base)["auc"]
    out["ratio"] = out["cluster_onboarded"] / out["cluster_all"]
    out["probes"] = n_probes
    out["probe_share"] = n_probes / len(table)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table")
    parser.add_argument("--routers", default="knn,cluster,classifier,stacked")
    parser.add_argument("--param", action="append", default=[], help="router.key=value")
    parser.add_argument("--cached-only", action="store_true", help="use only prompts already embedded")
    parser.add_argument("--onboarding", action="store_true")
    parser.add_argument("--held-out", default="", help="comma-separated models to onboard (default: 3 models)")
    parser.add_argument("--probe-share", type=float, default=0.05)
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    from eval.harness import embed_table, evaluate
    from eval.tables import load_eval_table

    table = load_eval_table(args.table)
    if args.cached_only:
        rows, X = cached_rows(table)
        table = table.subset(rows)
        print(f"using {len(rows)} cached prompts", file=sys.stderr)
    else:
        X = embed_table(table)
    params: dict[str, dict] = {}
    for item in args.param:
        key, value = item.split("=", 1)
        router, hp = key.split(".", 1)
        params.setdefault(router, {})[hp] = json.loads(value) if value[:1] in "0123456789-[{tf" else value
    names = [n for n in args.routers.split(",") if n]
    t0 = time.time()
    report = evaluate(table, X, names, params=params)
    result = report.to_json()
    for name, r in result["routers"].items():
        print(f"{name:12s} auc {r['auc']}  max_q {r['max_quality']}  cost_to_match {r['cost_to_match_best']}  "
              f"fit {r['fit_s']}s")
    b = result["baselines"]
    print(f"single auc {b['single_model_frontier']['auc']:.4f}  oracle auc {b['oracle']['auc']:.4f}  "
          f"({time.time() - t0:.0f}s)")
    if args.onboarding:
        held = [m for m in args.held_out.split(",") if m] or table.models[1::3][:3]
        result["onboarding"] = onboarding(table, X, held, args.probe_share, params=params.get("cluster"))
        result["onboarding"]["held_out"] = held
        print("onboarding:", json.dumps(result["onboarding"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
