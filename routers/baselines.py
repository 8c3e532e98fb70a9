"""Baseline routers: random, cheapest, strongest, fixed.

They need no embeddings to work, so the gateway can route with them from experts.yaml alone
(``from_experts``: priors and prices), and eval can fit them on a table like any other router.
"""
from __future__ import annotations

import hashlib

import numpy as np

from routers.base import Router, RouterError


class _PriorRouter(Router):
    """A router whose score per expert is a fixed vector (``scores_``), the same for every prompt."""

    state_attrs = ("scores_",)
    baseline = True

    def predict_scores(self, X: np.ndarray) -> np.ndarray:
        X = self.check_X(X)
        return np.broadcast_to(self.scores_, (X.shape[0], len(self.experts_))).copy()

    @classmethod
    def from_priors(cls, experts: list[str], scores: list[float], n_features: int, **params) -> "Router":
        """Build a fitted router straight from per-expert priors (no training data)."""
        router = cls(**params)
        router.experts_ = list(experts)
        router.n_features_in_ = int(n_features)
        router.scores_ = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
        return router


class StrongestRouter(_PriorRouter):
    """Always prefers the expert with the best mean observed (or prior) quality."""

    router_type = "strongest"

    def _fit(self, X, Y, cost):
        self.scores_ = np.nan_to_num(np.nanmean(np.where(np.isnan(Y), np.nan, Y), axis=0), nan=0.0)

    @classmethod
    def from_experts(cls, experts, priors, prices, n_features, **params) -> "Router":
        return cls.from_priors(experts, priors, n_features, **params)


class CheapestRouter(_PriorRouter):
    """Always prefers the cheapest expert: its score is 1 minus its price rank, normalised to [0, 1]."""

    router_type = "cheapest"

    def _fit(self, X, Y, cost):
        if cost is None:
            raise RouterError("cheapest needs a cost matrix to fit")
        self.scores_ = rank_scores(-np.nanmean(cost, axis=0))

    @classmethod
    def from_experts(cls, experts, priors, prices, n_features, **params) -> "Router":
        """From per-expert prices (lower is better); the priors play no part."""
        return cls.from_priors(experts, rank_scores(-np.asarray(prices, dtype=np.float64)), n_features, **params)


class FixedRouter(_PriorRouter):
    """Always prefers one named expert (score 1), the others score 0."""

    router_type = "fixed"

    def __init__(self, expert: str | None = None):
        self.expert = expert

    def _fit(self, X, Y, cost):
        if self.expert not in self.experts_:
            raise RouterError(f"fixed router: expert {self.expert!r} not among {self.experts_}")
        self.scores_ = (np.asarray(self.experts_) == self.expert).astype(np.float64)

    @classmethod
    def from_experts(cls, experts, priors, prices, n_features, **params) -> "Router":
        expert = params.get("expert")
        if expert not in experts:
            raise RouterError(f"fixed router: expert {expert!r} not among {list(experts)}")
        return cls.from_priors(experts, [float(name == expert) for name in experts], n_features, **params)


class RandomRouter(Router):
    """Uniform random scores, deterministic per prompt (a hash of its embedding and the seed)."""

    router_type = "random"
    state_attrs = ()
    baseline = True
    stochastic = True

    def __init__(self, seed: int = 0):
        self.seed = seed

    def _fit(self, X, Y, cost):
        pass

    @classmethod
    def from_experts(cls, experts, priors, prices, n_features, **params) -> "Router":
        router = cls(**params)
        router.experts_, router.n_features_in_ = list(experts), int(n_features)
        return router

    def predict_scores(self, X: np.ndarray) -> np.ndarray:
        X = self.check_X(X)
        out = np.empty((X.shape[0], len(self.experts_)))
        for i, row in enumerate(X):
            digest = hashlib.blake2b(row.tobytes() + str(self.seed).encode(), digest_size=8).digest()
            out[i] = np.random.default_rng(int.from_bytes(digest, "little")).random(len(self.experts_))
        return out


def rank_scores(values: np.ndarray) -> np.ndarray:
    """Map values to [0, 1] by rank (best = 1), so a baseline's scores say only 'which first'."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 1:
        return np.ones(1)
    order = np.argsort(np.argsort(values))
    return order / (values.size - 1)
