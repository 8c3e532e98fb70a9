"""The promotion gate: is a candidate router better than the live one on labelled prompts it never saw?

Both routers are swept over cost weights the way the gateway decides (utility = score - cost_weight
* normalised price), giving each a cost-quality frontier on the held-out labelled prompts; a choice
is worth its grade (where the chosen expert was not graded on that prompt, its mean grade over
those prompts stands in: labels are partial). The statistic is the area under each frontier's
upper concave hull over the single experts' price range (the hull: see ``hull_auc``). The gate passes when the candidate's auc exceeds the live router's by ``min_gain`` plus
``z`` standard errors (paired bootstrap over prompts), on at least ``min_rows`` prompts. A
candidate that learnt nothing (e.g. trained on shuffled labels) is not significantly better than
the live router, so it is never promoted.

Why a frontier and not the profile's cost weight alone: clients move along the frontier
(``x-router-cost-weight``, budgets), and at weight 0 the strongest single expert is hard to beat on
quality alone, so a router that is better at every other weight would never be promoted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from routers.policy import choose_batch


@dataclass(frozen=True)
class GateResult:
    passed: bool
    rows: int
    live_value: float
    candidate_value: float
    gain: float
    stderr: float
    reason: str

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def choice_values(pred: np.ndarray, Y: np.ndarray, norm_cost: np.ndarray, cost_weight: float) -> np.ndarray:
    """Per prompt: grade of the chosen expert (imputed by its mean where ungraded) - cost term."""
    pred = np.nan_to_num(np.asarray(pred, dtype=np.float64), nan=0.0)
    cost = np.broadcast_to(np.asarray(norm_cost, dtype=np.float64), pred.shape)
    choice = choose_batch(pred, cost, cost_weight)
    seen = ~np.isnan(Y)
    means = np.where(seen.sum(0) > 0, np.nansum(Y, 0) / np.maximum(seen.sum(0), 1), 0.0)
    rows = np.arange(len(choice))
    grade = np.where(seen[rows, choice], np.nan_to_num(Y[rows, choice]), means[choice])
    return grade - cost_weight * cost[rows, choice]


#: cost weights of the frontier sweep (costs are prices normalised to the dearest expert): 0, then
#: log-spaced up to where every prompt goes to its cheapest expert
SWEEP = np.concatenate([[0.0], np.logspace(-3, 1.5, 60)])


def frontier_rows(pred: np.ndarray, Y: np.ndarray, norm_cost: np.ndarray,
                  weights: np.ndarray = SWEEP) -> tuple[np.ndarray, np.ndarray]:
    """Per cost weight and prompt, the chosen expert's grade (imputed where ungraded) and cost:
    two (n_weights, n_prompts) arrays whose row means are the router's operating points."""
    pred = np.nan_to_num(np.asarray(pred, dtype=np.float64), nan=0.0)
    cost = np.broadcast_to(np.asarray(norm_cost, dtype=np.float64), pred.shape)
    seen = ~np.isnan(Y)
    means = np.where(seen.sum(0) > 0, np.nansum(Y, 0) / np.maximum(seen.sum(0), 1), 0.0)
    rows = np.arange(pred.shape[0])
    quality, spend = np.empty((len(weights), len(rows))), np.empty((len(weights), len(rows)))
    for k, w in enumerate(weights):
        choice = choose_batch(pred, cost, float(w))
        quality[k] = np.where(seen[rows, choice], np.nan_to_num(Y[rows, choice]), means[choice])
        spend[k] = cost[rows, choice]
    return quality, spend


def hull_auc(cost: np.ndarray, quality: np.ndarray, c_min: float, c_max: float) -> float:
    """Area under the upper concave hull of the operating points (linear between hull vertices,
    flat beyond them) over [c_min, c_max], divided by the width (RouterBench's AIQ).

    The hull, not the step frontier: mixing two operating points at random reaches every point of
    the chord between them, so a router whose scores are noise (it mixes experts arbitrarily) gains
    nothing over the live router's hull, while the step frontier would credit it for filling the
    steps between single experts."""
    from routers.policy import upper_hull_points
    hx, hy = upper_hull_points(cost, quality)
    edges = np.unique(np.concatenate([[c_min, c_max], hx[(hx > c_min) & (hx < c_max)]]))
    ys = np.interp(edges, hx, hy)
    return float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(edges)) / max(c_max - c_min, 1e-12))


def gate(live_pred: np.ndarray, cand_pred: np.ndarray, Y: np.ndarray, norm_cost: np.ndarray,
         min_gain: float = 0.0, z: float = 1.0, min_rows: int = 20, null_preds=(),
         boot: int = 200, seed: int = 0, halves: bool = False, not_worse: bool = False) -> GateResult:
    """Hull auc of candidate minus live on held-out labelled prompts, minus what the same recipe
    trained on shuffled labels (``null_preds``, the largest) gains; paired bootstrap over prompts for the
    standard error (see module doc). ``halves``: the gain must also be positive on each half of the
    prompts (alternate rows) on its own: a replication check. The gate runs after every retrain, so
    one z-test is tried many times; a gain that comes from a few noisy grades rarely shows on both
    halves, a real one does. ``not_worse``: a non-inferiority test instead (the candidate passes
    unless it is ``z`` standard errors worse), for a candidate that refreshes a router the loop
    itself promoted (see learning.loop)."""
    n = int(Y.shape[0])
    if n < min_rows:
        return GateResult(False, n, float("nan"), float("nan"), float("nan"), float("nan"),
                          f"{n} held-out prompts < min_rows {min_rows}")
    norm_cost = np.asarray(norm_cost, dtype=np.float64)
    c_min, c_max = float(norm_cost.min()), float(norm_cost.max())
    frontiers = [frontier_rows(p, Y, norm_cost) for p in (live_pred, cand_pred, *null_preds)]

    def stats(w: np.ndarray) -> tuple[float, float, float]:
        live, cand, *null = [hull_auc(c @ w, q @ w, c_min, c_max) for q, c in frontiers]
        return live, cand, (cand - live) - max([0.0] + [x - live for x in null])

    live, cand, gain = stats(np.full(n, 1.0 / n))
    rng = np.random.default_rng(seed)
    gains = [stats(np.bincount(rng.integers(0, n, n), minlength=n) / n)[2] for _ in range(boot)]
    stderr = float(np.std(gains, ddof=1))
    if not_worse:
        passed = gain + z * stderr > -min_gain
        reason = (f"gain {gain:+.4f} + {z:g} x stderr {stderr:.4f} {'>' if passed else '<='} -min_gain "
                  f"{-min_gain:g} (not worse than the live learned router)")
    else:
        passed = gain - z * stderr > min_gain
        reason = f"gain {gain:+.4f} - {z:g} x stderr {stderr:.4f} {'>' if passed else '<='} min_gain {min_gain:g}"
    if halves and passed:
        half_gains = [stats(m / m.sum())[2] for m in ((np.arange(n) % 2 == h).astype(float) for h in (0, 1))]
        if min(half_gains) <= min_gain:
            passed = False
            reason += f"; but a half does not replicate it (gains {half_gains[0]:+.4f}, {half_gains[1]:+.4f})"
    return GateResult(bool(passed), n, float(live), float(cand), float(gain), stderr, reason)
