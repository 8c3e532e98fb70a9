"""Off-policy estimators: the value of a target policy from logs written by another (logging) policy.

Inputs per logged row: the reward observed for the logged action, the logging propensity of that
action, and the probability the *target* policy gives it (``target_prob``). Doubly robust also takes
a reward model's estimates for every action (``q_hat`` (n, k)) and the target's full action
distribution (``target_probs`` (n, k)). Each estimator returns an :class:`Estimate` with a 95%
confidence interval: normal approximation for IPS and DR (means of i.i.d. terms), percentile
bootstrap (seeded) for the self-normalised SNIPS ratio.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval and the effective sample size of the weights."""

    value: float
    lo: float
    hi: float
    n: int
    ess: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _check(rewards, propensities, target_prob):
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    p = np.asarray(propensities, dtype=np.float64).reshape(-1)
    t = np.asarray(target_prob, dtype=np.float64).reshape(-1)
    if not (r.shape == p.shape == t.shape):
        raise ValueError("rewards, propensities and target probabilities differ in length")
    if r.size == 0:
        raise ValueError("no logged rows")
    if np.any(~(p > 0)) or np.any(p > 1):
        raise ValueError("propensities must be in (0, 1]")
    return r, p, t


def _ess(w: np.ndarray) -> float:
    return float(w.sum() ** 2 / max((w * w).sum(), 1e-300))


def _normal(terms: np.ndarray, w: np.ndarray) -> Estimate:
    m = float(terms.mean())
    se = float(terms.std(ddof=1) / np.sqrt(len(terms))) if len(terms) > 1 else float("inf")
    return Estimate(m, m - Z95 * se, m + Z95 * se, len(terms), _ess(w))


def ips(rewards, propensities, target_prob) -> Estimate:
    """Inverse propensity scoring: mean of (target / logging) * reward."""
    r, p, t = _check(rewards, propensities, target_prob)
    w = t / p
    return _normal(w * r, w)


def snips(rewards, propensities, target_prob, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """Self-normalised IPS: sum(w r) / sum(w); lower variance, slightly biased; bootstrap CI."""
    r, p, t = _check(rewards, propensities, target_prob)
    w = t / p
    value = float((w * r).sum() / w.sum()) if w.sum() > 0 else float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(r), size=(n_boot, len(r)))
    ws, rs = w[idx], r[idx]
    den = ws.sum(axis=1)
    boots = np.where(den > 0, (ws * rs).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)
    lo, hi = np.nanpercentile(boots, [2.5, 97.5]) if np.isfinite(boots).any() else (np.nan, np.nan)
    return Estimate(value, float(lo), float(hi), len(r), _ess(w))


def doubly_robust(rewards, propensities, actions, target_probs, q_hat) -> Estimate:
    """DR: sum_a pi(a|x) q_hat(x, a) + pi(a_i|x)/p_i * (r_i - q_hat(x, a_i)), normal CI."""
    actions = np.asarray(actions, dtype=np.int64).reshape(-1)
    target_probs = np.asarray(target_probs, dtype=np.float64)
    q_hat = np.asarray(q_hat, dtype=np.float64)
    rows = np.arange(len(actions))
    r, p, t = _check(rewards, propensities, target_probs[rows, actions])
    if target_probs.shape != q_hat.shape or target_probs.shape[0] != len(r):
        raise ValueError("target_probs and q_hat must both be (n, k)")
    w = t / p
    terms = (target_probs * q_hat).sum(axis=1) + w * (r - q_hat[rows, actions])
    return _normal(terms, w)


def greedy_probs(scores: np.ndarray, cost: np.ndarray | None = None, cost_weight: float = 0.0) -> np.ndarray:
    """The action distribution (n, k) of a deterministic router: all mass on argmax utility
    (ties to the cheaper expert, as the gateway's decision policy)."""
    from routers.policy import choose_batch

    scores = np.asarray(scores, dtype=np.float64)
    cost = np.zeros_like(scores) if cost is None else np.broadcast_to(np.asarray(cost, dtype=np.float64), scores.shape)
    choice = choose_batch(scores, cost, cost_weight)
    probs = np.zeros_like(scores)
    probs[np.arange(len(choice)), choice] = 1.0
    return probs


def evaluate_policy(rewards, propensities, actions, target_probs, q_hat=None) -> dict[str, Estimate]:
    """IPS, SNIPS and (when a reward model is given) DR estimates of one target policy."""
    actions = np.asarray(actions, dtype=np.int64).reshape(-1)
    target_probs = np.asarray(target_probs, dtype=np.float64)
    t = target_probs[np.arange(len(actions)), actions]
    out = {"ips": ips(rewards, propensities, t), "snips": snips(rewards, propensities, t)}
    if q_hat is not None:
        out["dr"] = doubly_robust(rewards, propensities, actions, target_probs, q_hat)
    return out
