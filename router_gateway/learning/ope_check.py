"""The gate's second opinion: the candidate's value on the logged traffic, by off-policy estimation.

The gate (learning.gate) compares routers on the labelled prompts, where ungraded choices need an
imputed grade. The logged traffic answers a narrower question without imputation: every shadowed
request's live answer was graded, and the request log holds the propensity with which the gateway
chose that expert (below 1 where the profile explores, a bandit draws, or a canary splits traffic).
So for the rows with a known propensity the candidate's value at the profile's cost weight is the
self-normalised IPS estimate (routers.ope.snips) over the rows where the candidate would have chosen
what was logged, utility (grade - w x normalised price) / (1 + w) like the gate's; the live router's
value the same way from its own out-of-sample choices.

It is a veto, used only when it has support: when the candidate's weights have an effective sample
size of at least ``ope_min_ess`` and the upper end of its 95% interval lies below the live router's
estimate, the candidate is not promoted, whatever the labelled prompts said. Without exploration
(propensity 1 everywhere, the default) the candidate is only seen where it agrees with what ran, which
says nothing about where it differs: the check then reports its support and stays out of the way.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from routers.ope import snips
from routers.policy import choose_batch


@dataclass(frozen=True)
class OpeCheck:
    rows: int            # labelled rows with a logged propensity and a graded logged answer
    ess: float           # effective sample size of the candidate's importance weights
    candidate: float     # SNIPS value of the candidate (nan without support)
    candidate_hi: float  # upper end of its 95% bootstrap interval
    live: float          # SNIPS value of the live router
    veto: bool
    reason: str

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def ope_check(Y: np.ndarray, logged: np.ndarray, propensity: np.ndarray, cand_pred: np.ndarray,
              live_pred: np.ndarray, norm_cost: np.ndarray, cost_weight: float, min_ess: float) -> OpeCheck | None:
    """``logged``: the logged expert's column per row (-1 unknown); ``propensity``: its logged
    propensity (nan unknown). None when no row has both and a grade for the logged answer."""
    n = Y.shape[0]
    rows = np.arange(n)
    known = (logged >= 0) & np.isfinite(propensity) & (propensity > 0)
    known &= ~np.isnan(Y[rows, np.where(logged >= 0, logged, 0)])
    known &= ~np.isnan(cand_pred).any(axis=1) & ~np.isnan(live_pred).any(axis=1)
    if not known.any():
        return None
    a, p = logged[known], propensity[known]
    cost = np.broadcast_to(np.asarray(norm_cost, dtype=np.float64), (int(known.sum()), Y.shape[1]))
    w = float(cost_weight)
    utility = (Y[rows[known], a] - w * cost[0, a]) / (1.0 + w)
    agrees = {name: (choose_batch(pred[known], cost, w) == a).astype(np.float64)
              for name, pred in (("candidate", cand_pred), ("live", live_pred))}
    cand = snips(utility, p, agrees["candidate"], n_boot=400)
    live = snips(utility, p, agrees["live"], n_boot=400)
    if cand.ess < min_ess or not np.isfinite(live.value):
        return OpeCheck(len(a), cand.ess, cand.value, cand.hi, live.value, False,
                        f"logged traffic: ess {cand.ess:.1f} < {min_ess:g}, no opinion")
    veto = bool(cand.hi < live.value)
    return OpeCheck(len(a), cand.ess, cand.value, cand.hi, live.value, veto,
                    f"logged traffic (ess {cand.ess:.1f}): candidate {cand.value:.4f} (95% up to {cand.hi:.4f}) "
                    f"{'below' if veto else 'not below'} live {live.value:.4f}")
