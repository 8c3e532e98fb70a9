"""Routing-quality metrics on a routing table (issue 5's definitions; pure numpy).

A router's *operating points* come from a cost-weight sweep: for each cost weight ``lam`` every
prompt goes to ``argmax(score - lam * cost)`` (``routers.policy.choose_batch``, ties to the cheaper
expert), and the point is (mean true cost, mean true quality) of those choices. ``lam`` runs over 0
and a log-spaced grid wide enough that its two ends choose the quality-maximising and the
cheapest expert on every prompt.

``auc``: q(c) = best quality among points with mean cost <= c (below the cheapest point, that
point's quality); integral of q over [c_min, c_max] / (c_max - c_min), where c_min and c_max are the
cheapest and the most expensive single model's mean cost. q is a step function, so the integral is
computed exactly, segment by segment. The single-model frontier (each model one point) and the
oracle (true scores swept the same way) use the same definition, so figures compare across tools.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routers.policy import choose_batch

#: how many log-spaced cost weights the sweep uses (besides 0)
N_COST_WEIGHTS = 200


@dataclass(frozen=True)
class Frontier:
    """Operating points of one router: ``cost[i]``, ``quality[i]`` at ``cost_weight[i]``."""

    cost: np.ndarray
    quality: np.ndarray
    cost_weight: np.ndarray


@dataclass(frozen=True)
class Baselines:
    """What every router is compared with on one table."""

    models: list[str]
    model_cost: np.ndarray        # mean cost per single model
    model_quality: np.ndarray     # mean quality per single model
    best: int                     # index of the best single model (highest quality, then cheaper)
    c_min: float
    c_max: float

    @property
    def best_cost(self) -> float:
        return float(self.model_cost[self.best])

    @property
    def best_quality(self) -> float:
        return float(self.model_quality[self.best])


# -- sweeping ------------------------------------------------------------------------------------
def cost_weight_grid(cost: np.ndarray, n: int = N_COST_WEIGHTS) -> np.ndarray:
    """0 followed by ``n`` log-spaced cost weights covering the table's cost scale.

    Scores live in [0, 1]; a cost weight matters once ``lam * cost`` differences are comparable with
    score differences. The low end (1e-4 / the largest cost) leaves every choice to the score; the
    high end (10 / the smallest positive cost difference between experts on a prompt, bounded
    below by the 1st percentile of positive costs) makes every prompt go to its cheapest expert.
    """
    cost = np.asarray(cost, dtype=np.float64)
    finite = cost[np.isfinite(cost)]
    positive = finite[finite > 0]
    if positive.size == 0:
        return np.zeros(1)
    spread = np.nanmax(cost, axis=1) - np.nanmin(cost, axis=1) if cost.ndim == 2 else positive
    spread = spread[np.isfinite(spread) & (spread > 0)]
    small = max(np.percentile(spread, 1) if spread.size else positive.min(), np.percentile(positive, 1) * 1e-3)
    lo, hi = 1e-4 / positive.max(), 10.0 / small
    return np.concatenate([[0.0], np.logspace(np.log10(lo), np.log10(hi), n)])


def sweep(pred: np.ndarray, true: np.ndarray, cost: np.ndarray,
          cost_weights: np.ndarray) -> tuple[Frontier, np.ndarray]:
    """Operating points of predicted scores ``pred`` judged by ``true`` scores and ``cost``.

    Returns the frontier and the (n_weights, n_prompts) matrix of chosen expert indices.
    """
    pred = np.nan_to_num(np.asarray(pred, dtype=np.float64), nan=-np.inf)
    true = np.asarray(true, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.float64)
    rows = np.arange(true.shape[0])
    choices = np.empty((len(cost_weights), true.shape[0]), dtype=np.int64)
    costs, quals = np.empty(len(cost_weights)), np.empty(len(cost_weights))
    for i, lam in enumerate(cost_weights):
        choice = choose_batch(pred, cost, float(lam))
        choices[i] = choice
        costs[i] = float(np.nanmean(cost[rows, choice]))
        quals[i] = float(np.nanmean(true[rows, choice]))
    return Frontier(costs, quals, np.asarray(cost_weights, dtype=np.float64)), choices


def baselines(true: np.ndarray, cost: np.ndarray, models: list[str]) -> Baselines:
    """Single-model points, the best single model and the auc cost range."""
    q = np.nanmean(np.asarray(true, dtype=np.float64), axis=0)
    c = np.nanmean(np.asarray(cost, dtype=np.float64), axis=0)
    best = int(np.lexsort((c, -q))[0])
    return Baselines(list(models), c, q, best, float(c.min()), float(c.max()))


# -- the step frontier ---------------------------------------------------------------------------
def _steps(cost: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by cost with the running best quality (the step function's values)."""
    cost = np.asarray(cost, dtype=np.float64)
    quality = np.asarray(quality, dtype=np.float64)
    keep = np.isfinite(cost) & np.isfinite(quality)
    cost, quality = cost[keep], quality[keep]
    if cost.size == 0:
        raise ValueError("no finite operating points")
    order = np.lexsort((-quality, cost))
    return cost[order], np.maximum.accumulate(quality[order])


def q_at(cost: np.ndarray, quality: np.ndarray, c: float | np.ndarray) -> np.ndarray:
    """q(c): best quality among points with cost <= c; below the cheapest point, its quality."""
    sc, sq = _steps(cost, quality)
    c = np.asarray(c, dtype=np.float64)
    # last index with cost <= max(c, cheapest): ties at the cheapest cost count together
    idx = np.searchsorted(sc, np.maximum(c, sc[0]), side="right") - 1
    return sq[idx]


def auc(cost: np.ndarray, quality: np.ndarray, c_min: float, c_max: float) -> float:
    """Exact integral of the step function q(c) over [c_min, c_max], divided by the width."""
    sc, _ = _steps(cost, quality)
    if not c_max > c_min:
        return float(q_at(cost, quality, c_min))
    inner = sc[(sc > c_min) & (sc < c_max)]
    edges = np.unique(np.concatenate([[c_min, c_max], inner]))
    values = q_at(cost, quality, edges[:-1])
    return float(np.sum(values * np.diff(edges)) / (c_max - c_min))


def hull_auc(cost: np.ndarray, quality: np.ndarray, c_min: float, c_max: float) -> float:
    """Convex-hull AIQ (RouterBench's relative): the upper non-decreasing concave hull of the points,
    linearly interpolated (flat below its first and beyond its last point), averaged over
    [c_min, c_max]. This is also the 'random mix' line when the points are single models."""
    hx, hy = upper_hull(cost, quality)
    if not c_max > c_min:
        return float(np.interp(c_min, hx, hy))
    edges = np.unique(np.concatenate([[c_min, c_max], hx[(hx > c_min) & (hx < c_max)]]))
    ys = np.interp(edges, hx, hy)
    return float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(edges)) / (c_max - c_min))


def upper_hull(cost: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the non-decreasing upper concave hull (what random mixes of the points reach)."""
    sc, sq = _steps(cost, quality)
    # keep only points that raise the running best: the others are dominated
    rise = np.concatenate([[True], sq[1:] > sq[:-1]])
    xs, ys = sc[rise], sq[rise]
    hull: list[tuple[float, float]] = []
    for x, y in zip(xs, ys):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (y2 - y1) * (x - x1) <= (y - y1) * (x2 - x1):  # middle point under the chord
                hull.pop()
            else:
                break
        if hull and x == hull[-1][0]:
            hull[-1] = (x, max(y, hull[-1][1]))
        else:
            hull.append((x, y))
    arr = np.asarray(hull)
    return arr[:, 0], arr[:, 1]


# -- summary metrics -----------------------------------------------------------------------------
def frontier_metrics(front: Frontier, base: Baselines) -> dict[str, float | None]:
    """auc, max_quality, quality_at_best_cost, cost_to_match_best (ratio), aiq for one router."""
    cheap_enough = front.cost <= base.best_cost * (1 + 1e-12)
    matching = front.quality >= base.best_quality - 1e-12
    return {
        "auc": auc(front.cost, front.quality, base.c_min, base.c_max),
        "max_quality": float(np.max(front.quality)),
        "quality_at_best_cost": float(np.max(front.quality[cheap_enough])) if cheap_enough.any() else None,
        "cost_to_match_best": (float(np.min(front.cost[matching]) / base.best_cost)
                               if matching.any() and base.best_cost > 0 else None),
        "aiq": hull_auc(front.cost, front.quality, base.c_min, base.c_max),
    }


def gap_closed(router_auc: float, single_auc: float, oracle_auc: float) -> float | None:
    """(auc - single-model frontier auc) / (oracle auc - single-model frontier auc)."""
    gap = oracle_auc - single_auc
    return float((router_auc - single_auc) / gap) if gap > 1e-12 else None


def single_model_frontier(base: Baselines) -> dict[str, float]:
    """auc of the single-model points and of their random-mix (convex interpolation) line."""
    return {
        "auc": auc(base.model_cost, base.model_quality, base.c_min, base.c_max),
        "random_mix_auc": hull_auc(base.model_cost, base.model_quality, base.c_min, base.c_max),
    }


# -- RouteLLM's two-model metrics ----------------------------------------------------------------
def strong_weak(base: Baselines) -> tuple[int, int]:
    """(strong, weak) model indices of a two-model table: strong has the higher mean quality."""
    if len(base.models) != 2:
        raise ValueError("APGR / CPT need exactly two models")
    return base.best, 1 - base.best


def pgr_curve(preference: np.ndarray, true: np.ndarray, strong: int,
              weak: int) -> tuple[np.ndarray, np.ndarray]:
    """Performance gap recovered as a function of the share of calls sent to the strong model.

    The threshold sweep of RouteLLM: prompts are sent to the strong model in decreasing order of
    ``preference`` (the router's strong-minus-weak estimate). Prompts with tied preference cannot be
    separated by a threshold, so the curve only has points at tie-group boundaries and is linear in
    between (the expectation under random tie-breaking). Returns (strong-call fraction, PGR).
    """
    true = np.asarray(true, dtype=np.float64)
    pref = np.asarray(preference, dtype=np.float64)
    n = true.shape[0]
    order = np.argsort(-pref, kind="stable")
    gain = (true[order, strong] - true[order, weak]) / n
    weak_q, strong_q = float(np.mean(true[:, weak])), float(np.mean(true[:, strong]))
    quality = weak_q + np.concatenate([[0.0], np.cumsum(gain)])
    sorted_pref = pref[order]
    boundary = np.concatenate([[True], sorted_pref[1:] != sorted_pref[:-1], [True]])
    calls = np.flatnonzero(boundary)  # number of prompts sent to strong at each boundary
    gap = strong_q - weak_q
    if abs(gap) < 1e-12:
        raise ValueError("strong and weak models have the same mean quality: PGR is undefined")
    return calls / n, (quality[calls] - weak_q) / gap


def apgr(preference: np.ndarray, true: np.ndarray, strong: int, weak: int) -> float:
    """Average PGR over strong-call shares in [0, 1] (RouteLLM: area under the quality vs
    strong-call curve, relative to the weak and strong models). Random routing gives 0.5."""
    x, y = pgr_curve(preference, true, strong, weak)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))


def cpt(preference: np.ndarray, true: np.ndarray, strong: int, weak: int, target: float) -> float | None:
    """Call-performance threshold: the smallest % of calls to the strong model at which PGR reaches
    ``target`` (e.g. 0.5 for CPT(50%)), interpolated on the curve; None if never."""
    x, y = pgr_curve(preference, true, strong, weak)
    hit = np.flatnonzero(y >= target - 1e-12)
    if hit.size == 0:
        return None
    j = int(hit[0])
    if j == 0:
        return 0.0
    frac = (target - y[j - 1]) / (y[j] - y[j - 1])
    return float(100.0 * (x[j - 1] + frac * (x[j] - x[j - 1])))


def two_model_metrics(pred: np.ndarray, true: np.ndarray, base: Baselines) -> dict[str, float | None]:
    """APGR, CPT(50%), CPT(80%) of predicted scores on a two-model table."""
    strong, weak = strong_weak(base)
    pref = np.asarray(pred, dtype=np.float64)
    pref = np.nan_to_num(pref[:, strong] - pref[:, weak], nan=0.0)
    return {"apgr": apgr(pref, true, strong, weak),
            "cpt50": cpt(pref, true, strong, weak, 0.5),
            "cpt80": cpt(pref, true, strong, weak, 0.8)}


# -- everything for one table --------------------------------------------------------------------
def evaluate_scores(pred: np.ndarray, true: np.ndarray, cost: np.ndarray, base: Baselines,
                    cost_weights: np.ndarray, oracle_auc: float | None = None,
                    single_auc: float | None = None) -> tuple[dict, Frontier, np.ndarray]:
    """Every metric of one router's (out-of-fold) predicted scores; returns (metrics, frontier, choices)."""
    front, choices = sweep(pred, true, cost, cost_weights)
    out = frontier_metrics(front, base)
    if oracle_auc is not None and single_auc is not None:
        out["gap_closed"] = gap_closed(out["auc"], single_auc, oracle_auc)
    if len(base.models) == 2:
        out.update(two_model_metrics(pred, true, base))
    return out, front, choices


def oracle(true: np.ndarray, cost: np.ndarray, base: Baselines,
           cost_weights: np.ndarray) -> tuple[dict, Frontier, np.ndarray]:
    """The per-prompt oracle: the true scores swept with the same cost weights."""
    return evaluate_scores(true, true, cost, base, cost_weights)
