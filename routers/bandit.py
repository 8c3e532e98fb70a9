"""Contextual bandit router: LinUCB per expert on a (fixed, seeded) random projection of the embedding.

Each expert (arm) keeps ridge sufficient statistics ``A`` (d, d) and ``b`` (d,) of observed quality
against the projected context; these arrays (``A_``, ``b_``) are the whole learnt state, so several
gateway replicas can keep them in Redis and add their updates. The reward is cost-aware at decision
time: ``choose`` maximises ``quality_ucb - cost_weight * cost``; arms model quality, so
``predict_scores`` stays an estimate in [0, 1] like every other router's.

Exploration is deterministic given the request id: with probability ``epsilon`` (decided by
``unit_hash(request_id)``) the choice is uniform over experts, otherwise the UCB argmax; every
choice comes with its propensity so the logs support off-policy evaluation and training.
"""
from __future__ import annotations

import numpy as np

from routers._common import expert_means
from routers.base import Router, RouterError
from routers.policy import unit_hash


class LinUCBRouter(Router):
    """LinUCB with ridge prior ``reg`` toward each expert's mean, on ``n_components`` projected dims."""

    router_type = "bandit"
    state_attrs = ("projection_", "A_", "b_", "prior_")
    chooses = gives_probabilities = learns_online = learns_from_logs = True
    #: sufficient statistics that partial_fit only adds to: replicas share them as summed deltas
    online_stats = ("A_", "b_")

    def __init__(self, n_components: int = 64, alpha: float = 0.5, reg: float = 1.0, epsilon: float = 0.05,
                 seed: int = 0):
        self.n_components = n_components
        self.alpha = alpha
        self.reg = reg
        self.epsilon = epsilon
        self.seed = seed

    # -- fitting ---------------------------------------------------------------------------
    def _fit(self, X, Y, cost):
        self._init_state(X.shape[1], Y.shape[1], expert_means(Y))
        rows, cols = np.nonzero(~np.isnan(Y))
        self._update(X[rows], cols, Y[rows, cols])

    def _init_state(self, d: int, k: int, prior: np.ndarray) -> None:
        p = int(self.n_components)
        if p <= 0 or p >= d:
            self.projection_ = np.eye(d)
        else:
            rng = np.random.default_rng(int(self.seed))
            self.projection_ = rng.normal(size=(d, p)) / np.sqrt(p)
        dim = self.projection_.shape[1] + 1                       # + bias feature
        self.A_ = np.tile(np.eye(dim) * float(self.reg), (k, 1, 1))
        self.b_ = np.zeros((k, dim))
        self.prior_ = np.asarray(prior, dtype=np.float64)         # rewards are centred on it
        self._after_load()

    def _after_load(self) -> None:
        self._inv = None

    def features(self, X: np.ndarray) -> np.ndarray:
        """Projected context with a bias column (n, n_components + 1)."""
        Z = np.asarray(X, dtype=np.float64) @ self.projection_
        return np.concatenate([Z, np.ones((Z.shape[0], 1))], axis=1)

    def _update(self, X: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        Z = self.features(X)
        r = rewards - self.prior_[actions]
        for a in np.unique(actions):
            sel = actions == a
            self.A_[a] += Z[sel].T @ Z[sel]
            self.b_[a] += Z[sel].T @ r[sel]
        self._inv = None

    def fit_logged(self, X: np.ndarray, actions, rewards, propensities,
                   experts: list[str]) -> "LinUCBRouter":
        """Fit from scratch on logged rows (chosen expert index, reward, propensity)."""
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        Y = np.full((len(actions), len(experts)), np.nan)
        Y[np.arange(len(actions)), actions] = np.asarray(rewards, dtype=np.float64)
        return super().fit(X, Y, experts=experts)

    def partial_fit(self, X: np.ndarray, actions, rewards, propensities=None) -> "LinUCBRouter":
        """Add logged feedback: one (context, chosen expert index, quality reward) per row.

        Propensities are accepted for interface uniformity; LinUCB's per-arm ridge regression is
        consistent without reweighting, so they are only validated.
        """
        X = self.check_X(X)
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if not (len(actions) == len(rewards) == X.shape[0]):
            raise RouterError("partial_fit: X, actions and rewards differ in length")
        if len(actions) and (actions.min() < 0 or actions.max() >= len(self.experts_)):
            raise RouterError("partial_fit: action index out of range")
        if propensities is not None:
            p = np.asarray(propensities, dtype=np.float64).reshape(-1)
            if p.shape != rewards.shape or np.any(~(p > 0)) or np.any(p > 1):
                raise RouterError("partial_fit: propensities must be in (0, 1], one per row")
        keep = ~np.isnan(rewards)
        self._update(X[keep], actions[keep], rewards[keep])
        return self

    # -- scoring and choosing ------------------------------------------------------------
    def _inverse(self) -> np.ndarray:
        if getattr(self, "_inv", None) is None:
            self._inv = np.linalg.inv(self.A_)
        return self._inv

    def mean_and_width(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Estimated quality (n, k) and the confidence width sqrt(z' A^-1 z) per arm."""
        Z = self.features(self.check_X(X))
        inv = self._inverse()
        theta = np.einsum("kij,kj->ki", inv, self.b_)
        mean = Z @ theta.T + self.prior_[None, :]
        width = np.sqrt(np.maximum(np.einsum("ni,kij,nj->nk", Z, inv, Z), 0.0))
        return mean, width

    def predict_scores(self, X: np.ndarray) -> np.ndarray:
        mean, _ = self.mean_and_width(X)
        return np.clip(mean, 0.0, 1.0)

    def choose(self, x: np.ndarray, request_id: str, cost: np.ndarray | None = None,
               cost_weight: float = 0.0, eligible: np.ndarray | None = None) -> tuple[int, float]:
        """One decision: (expert index, propensity). Deterministic given ``request_id``."""
        mean, width = self.mean_and_width(x)
        k = len(self.experts_)
        cost = np.zeros(k) if cost is None else np.asarray(cost, dtype=np.float64)
        ok = np.ones(k, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
        if not ok.any():
            raise RouterError("no eligible expert")
        utility = np.where(ok, mean[0] + float(self.alpha) * width[0] - float(cost_weight) * cost, -np.inf)
        greedy = int(np.argmax(utility))
        eps, n_ok = float(self.epsilon), int(ok.sum())
        u = unit_hash(request_id, salt=f"bandit:{self.seed}")
        if u < eps:
            choice = int(np.flatnonzero(ok)[min(int(u / eps * n_ok), n_ok - 1)])
        else:
            choice = greedy
        propensity = eps / n_ok + (1.0 - eps) * (choice == greedy)
        return choice, float(propensity)

    def action_probabilities(self, X: np.ndarray, cost: np.ndarray | None = None,
                             cost_weight: float = 0.0) -> np.ndarray:
        """The probability (n, k) that ``choose`` picks each expert (for off-policy evaluation)."""
        mean, width = self.mean_and_width(X)
        k = len(self.experts_)
        cost = np.zeros((1, k)) if cost is None else np.atleast_2d(np.asarray(cost, dtype=np.float64))
        greedy = np.argmax(mean + float(self.alpha) * width - float(cost_weight) * cost, axis=1)
        probs = np.full(mean.shape, float(self.epsilon) / k)
        probs[np.arange(len(greedy)), greedy] += 1.0 - float(self.epsilon)
        return probs
