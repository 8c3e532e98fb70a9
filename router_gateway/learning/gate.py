"""The promotion gate: is a candidate router better than the live one on labelled prompts it never saw?

Both routers choose an expert for every held-out prompt the way the gateway does (utility = score -
cost_weight * normalised cost), at each of several cost weights. A choice is worth its grade minus
the same cost term; where the chosen expert was not graded on that prompt, its mean grade over the
held-out prompts stands in (labels are partial). A prompt's gain is the candidate's value minus the
live router's, averaged over the cost weights; the gate passes when the mean gain exceeds
``min_gain`` by ``z`` standard errors (paired over prompts) on at least ``min_rows`` prompts.

Why several cost weights: a router is a whole cost-quality frontier (clients move along it with
``x-router-cost-weight``, budgets move the weight), and that frontier is what the figures measure.
At the profile's weight alone a router that is better everywhere else can lose by a hair (at weight
0 the strongest single model is hard to beat on quality alone) and would never be promoted. A candidate that learnt
nothing (e.g. trained on shuffled labels) chooses no better than the live router, so its gain is
not significantly positive and it is never promoted.
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


#: cost weights (on prices normalised to the dearest expert) the gate averages over by default: from
#: quality only to "the cheapest expert unless another is much better"
DEFAULT_COST_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def gate(live_pred: np.ndarray, cand_pred: np.ndarray, Y: np.ndarray, norm_cost: np.ndarray,
         cost_weights=DEFAULT_COST_WEIGHTS, min_gain: float = 0.0, z: float = 1.64,
         min_rows: int = 20) -> GateResult:
    """Compare two routers' choices on held-out labelled prompts (see module doc)."""
    n = int(Y.shape[0])
    if n < min_rows:
        return GateResult(False, n, float("nan"), float("nan"), float("nan"), float("nan"),
                          f"{n} held-out prompts < min_rows {min_rows}")
    weights = [float(w) for w in np.atleast_1d(cost_weights)]
    live = np.mean([choice_values(live_pred, Y, norm_cost, w) for w in weights], axis=0)
    cand = np.mean([choice_values(cand_pred, Y, norm_cost, w) for w in weights], axis=0)
    diff = cand - live
    gain = float(diff.mean())
    stderr = float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    passed = gain - z * stderr > min_gain
    reason = (f"gain {gain:+.4f} - {z:g} x stderr {stderr:.4f} {'>' if passed else '<='} min_gain {min_gain:g}")
    return GateResult(bool(passed), n, float(live.mean()), float(cand.mean()), gain, stderr, reason)
