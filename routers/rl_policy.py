"""RL-trained router (registry name ``policy``): a small torch network over experts, learnt offline
from logged (embedding, chosen expert, propensity, reward) with importance weighting.

The network outputs one logit per expert: ``sigmoid`` of it estimates the quality the expert would
get (``predict_scores``), and the routing policy is a softmax over utilities,
``pi(a | x) = softmax((score - cost_weight * cost) / temperature)``. Training minimises the
importance-weighted cross-entropy on the logged action only: each logged row counts with weight
``1 / propensity`` (clipped at ``max_weight``, then self-normalised), which corrects for the
logging policy having favoured some experts on some prompts, so logs written by *any* exploring
router can train it. Fitting on a full table treats each observed entry as logged by a uniform
policy over the experts observed on that prompt. Weights are numpy arrays; torch is used only to fit.
"""
from __future__ import annotations

import numpy as np

from routers._common import softmax
from routers.base import Router, RouterError, check_xy
from routers.classifier import _train
from routers.policy import unit_hash


class PolicyRouter(Router):
    """Importance-weighted off-policy network over experts with a softmax policy."""

    router_type = "policy"
    state_attrs = ("W1_", "b1_", "W2_", "b2_")
    chooses = gives_probabilities = learns_online = learns_from_logs = True

    def __init__(self, hidden: int = 128, epochs: int = 300, lr: float = 3e-3, weight_decay: float = 1e-3,
                 temperature: float = 0.05, max_weight: float = 50.0, seed: int = 0):
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.max_weight = max_weight
        self.seed = seed

    def _fit(self, X, Y, cost):
        seen = ~np.isnan(Y)
        # each observed entry is a logged action under a uniform policy over the observed experts
        prop = np.where(seen, 1.0 / np.maximum(seen.sum(axis=1, keepdims=True), 1), np.nan)
        self._train_logged(X, Y, prop, init=None)

    def _train_logged(self, X, Y, prop, init) -> None:
        w = np.where(np.isnan(Y), 0.0, np.minimum(1.0 / np.where(np.isnan(prop), 1.0, prop), float(self.max_weight)))
        w = w * (np.count_nonzero(w) / max(w.sum(), 1e-12))   # self-normalise: mean weight 1
        state, _, _ = _train(X, Y, np.zeros(X.shape[0], dtype=bool), int(self.hidden), float(self.weight_decay),
                             int(self.epochs), float(self.lr), 0.0, int(self.seed), weights=w, init=init)
        self.W1_, self.b1_, self.W2_, self.b2_ = state

    def fit_logged(self, X: np.ndarray, actions, rewards, propensities,
                   experts: list[str]) -> "PolicyRouter":
        """Fit from scratch on logged rows (chosen expert index, reward, logging propensity)."""
        X, Y, P = self._logged_matrices(X, actions, rewards, propensities, len(experts))
        self.experts_ = list(experts)
        self.n_features_in_ = X.shape[1]
        self._train_logged(X, Y, P, init=None)
        return self

    @staticmethod
    def _logged_matrices(X, actions, rewards, propensities, k):
        """Validate logged rows; (X, Y, P) with Y and P NaN except at the logged action."""
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        props = np.asarray(propensities, dtype=np.float64).reshape(-1)
        n = len(actions)
        if not (len(rewards) == len(props) == n == np.asarray(X).shape[0]):
            raise RouterError("X, actions, rewards and propensities differ in length")
        if n and (actions.min() < 0 or actions.max() >= k):
            raise RouterError("action index out of range")
        if np.any(~(props > 0)) or np.any(props > 1):
            raise RouterError("propensities must be in (0, 1]")
        Y, P = np.full((n, k), np.nan), np.full((n, k), np.nan)
        Y[np.arange(n), actions] = rewards
        P[np.arange(n), actions] = props
        X, Y = check_xy(X, Y)
        return X, Y, P

    def partial_fit(self, X: np.ndarray, actions, rewards, propensities) -> "PolicyRouter":
        """Continue training (warm start) on logged rows: chosen expert index, reward in [0, 1], propensity."""
        X, Y, P = self._logged_matrices(self.check_X(X), actions, rewards, propensities, len(self.experts_))
        self._train_logged(X, Y, P, init=(self.W1_, self.b1_, self.W2_, self.b2_))
        return self

    def predict_scores(self, X: np.ndarray) -> np.ndarray:
        X = self.check_X(X).astype(np.float64)
        h = np.maximum(X @ self.W1_ + self.b1_, 0.0) if self.W1_.size else X
        return 1.0 / (1.0 + np.exp(-np.clip(h @ self.W2_ + self.b2_, -40, 40)))

    def action_probabilities(self, X: np.ndarray, cost: np.ndarray | None = None,
                             cost_weight: float = 0.0) -> np.ndarray:
        """pi(a | x) for every expert (n, k): softmax of utility / temperature."""
        scores = self.predict_scores(X)
        cost = np.zeros_like(scores) if cost is None else np.broadcast_to(np.asarray(cost, dtype=np.float64), scores.shape)
        return softmax((scores - float(cost_weight) * cost) / max(float(self.temperature), 1e-6), axis=1)

    def choose(self, x: np.ndarray, request_id: str, cost: np.ndarray | None = None,
               cost_weight: float = 0.0, eligible: np.ndarray | None = None) -> tuple[int, float]:
        """Sample an expert from the policy, deterministically given ``request_id``; returns (index, propensity)."""
        probs = self.action_probabilities(x, None if cost is None else np.asarray(cost)[None, :], cost_weight)[0]
        if eligible is not None:
            probs = probs * np.asarray(eligible, dtype=bool)
            if probs.sum() <= 0:
                raise RouterError("no eligible expert")
            probs = probs / probs.sum()
        u = unit_hash(request_id, salt=f"policy:{self.seed}")
        choice = int(min(np.searchsorted(np.cumsum(probs), u, side="right"), len(probs) - 1))
        while probs[choice] <= 0:   # guard against float round-off landing on a masked expert
            choice -= 1
        return choice, float(probs[choice])
