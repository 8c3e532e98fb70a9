"""Budget pacing replay: a routing table as one day of traffic under a budget (issue 18's figure).

    python -m eval.pacing_sim [--table ../shared/data/bench/llmrouter.csv] [--budget-share 0.5]

Every prompt of the table arrives once, in a seeded random order, spread evenly over one UTC day. A
cross-fitted router (each prompt scored by a kNN trained on the other folds, all-MiniLM-L6-v2) ranks
the models with the gateway's policy (``routers.policy.rank_experts``, cost normalised to the most
expensive model for that prompt); the answer costs and scores what the table says. The key's daily
budget is ``--budget-share`` of what the quality-first policy (the profile's base cost weight) would
spend. The pacer is the gateway's own ``BudgetPacer`` with the profile's default parameters, driven by a
simulated clock. The hard limit stays: a request that arrives once the budget is spent gets a 429.

It prints: spend against the budget, 429s, mean quality served, and the quality of the best *constant*
cost weight chosen in hindsight for the same spend (bisection on the weight), for comparison.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from router_gateway.capacity.pacing import BudgetPacer, PacingParams
from routers.policy import rank_experts

DEFAULT_TABLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bench" / "llmrouter.csv"


def cross_fitted_scores(table, X: np.ndarray, router: str = "knn", seed: int = 0) -> np.ndarray:
    """Every prompt's predicted scores from a router fitted on the other folds."""
    from eval.harness import build_router
    pred = np.zeros_like(table.scores)
    for fold in np.unique(table.folds):
        test = table.folds == fold
        model = build_router(router, seed).fit(X[~test], table.scores[~test], table.costs[~test])
        pred[test] = model.predict_scores(X[test])
    return pred


def choose(pred_row: np.ndarray, cost_row: np.ndarray, cost_weight: float) -> int:
    norm = cost_row / max(cost_row.max(), 1e-12)
    return int(rank_experts(pred_row, norm, cost_weight).order[0])


def replay_constant(pred, costs, true, weight: float) -> tuple[float, float]:
    """(spend, mean quality) of routing every prompt with one cost weight."""
    norm = costs / np.maximum(costs.max(axis=1, keepdims=True), 1e-12)
    utility = pred - weight * norm
    picks = _argmax_ties_cheap(utility, norm)
    rows = np.arange(len(picks))
    return float(costs[rows, picks].sum()), float(true[rows, picks].mean())


def _argmax_ties_cheap(utility: np.ndarray, cost: np.ndarray) -> np.ndarray:
    best = utility.max(axis=1, keepdims=True)
    tied = np.isclose(utility, best, rtol=0.0, atol=1e-12)
    return np.where(tied, cost, np.inf).argmin(axis=1)


def hindsight_constant(pred, costs, true, spend: float) -> tuple[float, float, float]:
    """The constant weight whose spend matches ``spend`` (bisection; spend falls as the weight rises)."""
    lo, hi = 0.0, 1.0
    while replay_constant(pred, costs, true, hi)[0] > spend and hi < 1e6:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if replay_constant(pred, costs, true, mid)[0] > spend:
            lo = mid
        else:
            hi = mid
    s, q = replay_constant(pred, costs, true, hi)
    return hi, s, q


def replay_paced(pred, costs, true, order, budget: float, base_weight: float, params: PacingParams,
                 day_start: float) -> dict:
    """One day of traffic through the pacer; the hard limit refuses requests once spend >= budget."""
    clock = {"now": day_start}
    pacer = BudgetPacer(clock=lambda: clock["now"])
    n = len(order)
    spent, quality, refused, weights = 0.0, 0.0, 0, []
    for i, row in enumerate(order):
        clock["now"] = day_start + (i + 0.5) / n * 86400.0
        if spent >= budget:
            refused += 1
            continue
        decision = pacer.effective("key", base_weight, params, [("day", budget, spent)])
        weight = decision.effective if decision else base_weight
        weights.append(weight)
        pick = choose(pred[row], costs[row], weight)
        spent += costs[row, pick]
        quality += true[row, pick]
    return {"spend": spent, "quality": quality / n, "refused": refused,
            "weights": np.quantile(weights, [0.1, 0.5, 0.9]).round(3).tolist()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default=str(DEFAULT_TABLE))
    ap.add_argument("--budget-share", type=float, default=0.5)
    ap.add_argument("--base-weight", type=float, default=0.0, help="the profile's cost weight (quality first)")
    ap.add_argument("--seeds", type=int, default=3, help="arrival orders replayed")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    from eval.harness import embed_table
    from eval.tables import load_eval_table
    table = load_eval_table(args.table)
    X = embed_table(table)
    pred = cross_fitted_scores(table, X)
    true, costs = table.scores, table.costs
    free_spend, free_quality = replay_constant(pred, costs, true, args.base_weight)
    budget = args.budget_share * free_spend
    day = datetime(2026, 1, 15, tzinfo=timezone.utc).timestamp()
    runs = []
    for seed in range(args.seeds):
        order = np.random.default_rng(seed).permutation(len(table))
        paced = replay_paced(pred, costs, true, order, budget, args.base_weight, PacingParams(), day)
        weight, s, q = hindsight_constant(pred, costs, true, paced["spend"])
        runs.append({"seed": seed, **paced, "spend_vs_budget": paced["spend"] / budget,
                     "hindsight_weight": weight, "hindsight_quality": q,
                     "quality_vs_hindsight": paced["quality"] / q})
    out = {"table": table.name, "prompts": len(table), "base_weight": args.base_weight,
           "quality_first": {"spend": free_spend, "quality": free_quality}, "budget": budget, "runs": runs}
    print(f"{table.name}: {len(table)} prompts over one day; quality-first spend ${free_spend:.4f} "
          f"(quality {free_quality:.4f}); budget ${budget:.4f} ({args.budget_share:.0%})")
    print("| seed | spend / budget | 429s | quality served | best constant weight (hindsight) | its quality "
          "| served / hindsight | effective weight p10/p50/p90 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in runs:
        print(f"| {r['seed']} | {r['spend_vs_budget']:.4f} | {r['refused']} | {r['quality']:.4f} | "
              f"{r['hindsight_weight']:.3f} | {r['hindsight_quality']:.4f} | {r['quality_vs_hindsight']:.4f} "
              f"| {'/'.join(str(w) for w in r['weights'])} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
