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

With ``--profile-budget-share P`` it also replays the key *and* profile case: each prompt comes from one
of two keys (seeded coin) through one profile; the profile's daily budget is P of the quality-first
spend, key "tight" gets ``--tight-key-share`` of its own traffic's quality-first spend and key "loose"
``--loose-key-share``. Routing uses the gateway's ``budget_pacing`` (the greater effective weight of the
key's and the profile's controllers); it prints each budget's spend, the 429s and which budget bound.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from router_gateway.capacity.pacing import BudgetPacer, PacingParams, budget_pacing
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
    picks = replay_constant_picks(pred, costs, weight)
    rows = np.arange(len(picks))
    return float(costs[rows, picks].sum()), float(true[rows, picks].mean())


def replay_constant_picks(pred, costs, weight: float) -> np.ndarray:
    """Each prompt's pick under one constant cost weight (ties go to the cheaper model)."""
    norm = costs / np.maximum(costs.max(axis=1, keepdims=True), 1e-12)
    return _argmax_ties_cheap(pred - weight * norm, norm)


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


class _SimSpend:
    """The gateway's SpendView for the replay: spend per subject, the same figure for day and month."""

    def __init__(self):
        self.usd: dict[str, float] = {}

    def spent(self, subject: str) -> tuple[float, float]:
        return self.usd.get(subject, 0.0), self.usd.get(subject, 0.0)


def replay_key_and_profile(pred, costs, true, order, owner, key_budgets: dict[str, float],
                           profile_budget: float, base_weight: float, day_start: float) -> dict:
    """Keys ``owner[row]`` share one paced profile with a budget; both hard limits refuse."""
    from types import SimpleNamespace
    from router_gateway.state.keys import ApiKey
    from router_gateway.domain.config import PacingSettings, Profile, ProfileBudget
    clock = {"now": day_start}
    profile = Profile(router="sim", cost_weight=base_weight, pacing=PacingSettings(),
                      budget=ProfileBudget(usd_per_day=profile_budget))
    spend = _SimSpend()
    gateway = SimpleNamespace(spend=spend, pacer=BudgetPacer(clock=lambda: clock["now"]),
                              runtime=SimpleNamespace(config=SimpleNamespace(profiles={"shared": profile})))
    keys = {name: ApiKey(id=name, hash="", budget_usd_day=b) for name, b in key_budgets.items()}
    n, quality, refused, bound = len(order), 0.0, 0, {}
    limits = {"profile:shared": profile_budget, **key_budgets}
    for i, row in enumerate(order):
        clock["now"] = day_start + (i + 0.5) / n * 86400.0
        key = keys[owner[row]]
        if any(spend.usd.get(s, 0.0) >= limits[s] for s in (key.id, "profile:shared")):
            refused += 1
            continue
        decision = budget_pacing(gateway, key, "shared")(profile, base_weight)
        bound[decision.subject] = bound.get(decision.subject, 0) + 1
        pick = choose(pred[row], costs[row], decision.effective)
        for s in (key.id, "profile:shared"):
            spend.usd[s] = spend.usd.get(s, 0.0) + costs[row, pick]
        quality += true[row, pick]
    return {"spend_vs_budget": {s: spend.usd.get(s, 0.0) / b for s, b in limits.items()},
            "refused": refused, "quality": quality / n, "bound": bound}


def key_and_profile_runs(pred, costs, true, args, day: float) -> dict:
    """The key-and-profile replay for each seed (see the module docstring)."""
    rows = np.arange(len(pred))
    free = replay_constant_picks(pred, costs, args.base_weight)
    runs = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(100 + seed)
        owner = np.where(rng.random(len(pred)) < 0.5, "tight", "loose")
        own = {k: float(costs[rows[owner == k], free[owner == k]].sum()) for k in ("tight", "loose")}
        key_budgets = {"tight": args.tight_key_share * own["tight"], "loose": args.loose_key_share * own["loose"]}
        profile_budget = args.profile_budget_share * (own["tight"] + own["loose"])
        order = np.random.default_rng(seed).permutation(len(pred))
        runs.append({"seed": seed, "key_budgets": key_budgets, "profile_budget": profile_budget,
                     **replay_key_and_profile(pred, costs, true, order, owner, key_budgets, profile_budget,
                                              args.base_weight, day)})
    return {"profile_budget_share": args.profile_budget_share, "tight_key_share": args.tight_key_share,
            "loose_key_share": args.loose_key_share, "runs": runs}


def print_key_and_profile(out: dict) -> None:
    print(f"\nkey and profile budgets: profile {out['profile_budget_share']:.0%} of the quality-first spend, "
          f"key tight {out['tight_key_share']:.0%} and key loose {out['loose_key_share']:.0%} of their own")
    print("| seed | profile spend / budget | tight spend / budget | loose spend / budget | 429s | quality served "
          "| requests whose weight the profile / tight / loose set |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in out["runs"]:
        s, b = r["spend_vs_budget"], r["bound"]
        print(f"| {r['seed']} | {s['profile:shared']:.4f} | {s['tight']:.4f} | {s['loose']:.4f} | {r['refused']} "
              f"| {r['quality']:.4f} | {b.get('profile:shared', 0)} / {b.get('tight', 0)} / {b.get('loose', 0)} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default=str(DEFAULT_TABLE))
    ap.add_argument("--budget-share", type=float, default=0.5)
    ap.add_argument("--base-weight", type=float, default=0.0, help="the profile's cost weight (quality first)")
    ap.add_argument("--seeds", type=int, default=3, help="arrival orders replayed")
    ap.add_argument("--profile-budget-share", type=float, help="also replay a profile budget shared by two keys")
    ap.add_argument("--tight-key-share", type=float, default=0.4)
    ap.add_argument("--loose-key-share", type=float, default=0.9)
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
    if args.profile_budget_share:
        out["key_and_profile"] = key_and_profile_runs(pred, costs, true, args, day)
        print_key_and_profile(out["key_and_profile"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
