"""Off-policy estimate of a candidate router's quality and cost from the gateway's logs.

The logging policy's own value is the logged mean (normal CI). The candidate's action distribution
comes from its ``action_probabilities`` (routers that declare ``gives_probabilities``) or, for deterministic routers, all mass on
its argmax utility (``score - cost_weight * cost``, cost from the logged per-expert mean cost).
Quality is estimated with IPS, SNIPS and doubly robust (reward model: the candidate's own
predicted scores), cost with IPS and SNIPS on the logged cost. Rows without a propensity (a
fallback answered) are skipped: their action was not the policy's choice.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from router_gateway.training.data import TrainingData
from routers import ope


def candidate_probs(router, X: np.ndarray, expert_cost: np.ndarray, cost_weight: float) -> np.ndarray:
    """The candidate's probability of each expert per row (n, k)."""
    if router.gives_probabilities:
        return router.action_probabilities(X, expert_cost[None, :], cost_weight)
    return ope.greedy_probs(router.predict_scores(X), expert_cost[None, :], cost_weight)


def estimate(router, X: np.ndarray, data: TrainingData, cost_weight: float = 0.0) -> dict[str, Any]:
    """IPS / SNIPS / DR estimates for the candidate vs. the logging policy's value, with CIs.

    ``data``'s experts must be the router's experts in the router's order (``load_logs(..., experts)``).
    """
    keep = ~np.isnan(data.propensities)
    if not keep.any():
        raise ValueError("no logged row has a propensity: OPE needs an exploring logging policy")
    X, actions = X[keep], data.actions[keep]
    rewards, props = data.rewards[keep], data.propensities[keep]
    cost = np.nan_to_num(data.logged_cost[keep], nan=0.0)
    per_expert_cost = np.array([np.nanmean(np.where(data.actions == j, np.nan_to_num(data.logged_cost), np.nan))
                                if np.any(data.actions == j) else np.nan for j in range(len(data.experts))])
    per_expert_cost = np.nan_to_num(per_expert_cost, nan=np.nanmean(per_expert_cost) if np.isfinite(
        per_expert_cost).any() else 0.0)
    probs = candidate_probs(router, X, per_expert_cost, cost_weight)
    q_hat = router.predict_scores(X)
    quality = ope.evaluate_policy(rewards, props, actions, probs, q_hat)
    t = probs[np.arange(len(actions)), actions]
    cost_est = {"ips": ope.ips(cost, props, t), "snips": ope.snips(cost, props, t)}
    logging = {"quality": ope.ips(rewards, props, props), "cost": ope.ips(cost, props, props)}
    return {"n_rows": int(keep.sum()), "skipped_no_propensity": int((~keep).sum()),
            "candidate": {"quality": {k: v.as_dict() for k, v in quality.items()},
                          "cost": {k: v.as_dict() for k, v in cost_est.items()}},
            "logging_policy": {k: v.as_dict() for k, v in logging.items()},
            "cost_weight": cost_weight}


def render(result: dict[str, Any]) -> str:
    """A small text table for the terminal."""
    lines = [f"rows used: {result['n_rows']} (skipped without propensity: {result['skipped_no_propensity']})",
             f"{'':24s} {'estimate':>10s} {'95% CI':>24s} {'ESS':>8s}"]

    def row(label, e):
        lines.append(f"{label:24s} {e['value']:10.4f} [{e['lo']:10.4f}, {e['hi']:10.4f}] {e['ess']:8.1f}")

    row("logging quality", result["logging_policy"]["quality"])
    for k, e in result["candidate"]["quality"].items():
        row(f"candidate quality {k}", e)
    row("logging cost (USD)", result["logging_policy"]["cost"])
    for k, e in result["candidate"]["cost"].items():
        row(f"candidate cost {k}", e)
    return "\n".join(lines)
