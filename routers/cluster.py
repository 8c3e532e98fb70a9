"""UniRoute cluster router ("Universal Model Routing for Efficient LLM Inference").

K-means over prompt embeddings; each expert is a vector of per-cluster quality, kept with its
observation counts so uncertainty is known. Per-cluster quality is shrunk toward a prior (the
expert's global mean shifted by the cluster's difficulty, i.e. how much better or worse every expert
does there) so few-sample clusters are not noisy. A prompt's quality for an expert is read from its
nearest cluster (``hard``) or a softmax over negative squared distances / ``temperature`` (``soft``).

Onboarding (``add_expert``): a new expert's vector comes from a small probe set assigned to the
existing clusters; neither the clusters nor the other experts' vectors are refitted.
"""
from __future__ import annotations

import numpy as np

from routers._common import expert_means, kmeans, softmax, sq_dists
from routers.base import Router, RouterError


class ClusterRouter(Router):
    """Per-cluster expert quality over k-means clusters of prompt embeddings."""

    router_type = "cluster"
    state_attrs = ("centroids_", "quality_", "counts_", "global_mean_", "difficulty_")
    grows_experts = True

    def __init__(self, n_clusters: int = 40, assignment: str = "soft", temperature: float = 0.05,
                 prior_strength: float = 4.0, seed: int = 0, n_init: int = 3):
        self.n_clusters = n_clusters
        self.assignment = assignment
        self.temperature = temperature
        self.prior_strength = prior_strength
        self.seed = seed
        self.n_init = n_init

    def _fit(self, X, Y, cost):
        if self.assignment not in ("hard", "soft"):
            raise RouterError(f"cluster: assignment must be 'hard' or 'soft', got {self.assignment!r}")
        if int(self.n_clusters) < 1:
            raise RouterError("cluster: n_clusters must be >= 1")
        self.centroids_, labels = kmeans(X, int(self.n_clusters), seed=int(self.seed), n_init=int(self.n_init))
        weights = np.eye(self.centroids_.shape[0])[labels]           # hard labels for the statistics
        self.global_mean_ = expert_means(Y)
        sums, counts = _cluster_stats(weights, Y)
        self.difficulty_ = _difficulty(sums, counts, self.global_mean_)
        self.counts_ = counts
        self.quality_ = self._shrink(sums, counts, self.global_mean_[None, :])

    def _shrink(self, sums: np.ndarray, counts: np.ndarray, global_mean: np.ndarray) -> np.ndarray:
        prior = np.clip(global_mean + self.difficulty_[:, None], 0.0, 1.0)
        s = float(self.prior_strength)
        return np.clip((sums + s * prior) / np.maximum(counts + s, 1e-12), 0.0, 1.0)

    def assign(self, X: np.ndarray) -> np.ndarray:
        """Cluster weights (n, n_clusters): one-hot (hard) or softmax over distances (soft)."""
        X = self.check_X(X)
        d = sq_dists(X, self.centroids_)
        if self.assignment == "hard":
            return np.eye(self.centroids_.shape[0])[d.argmin(axis=1)]
        return softmax(-d / max(float(self.temperature), 1e-6), axis=1)

    def predict_scores(self, X: np.ndarray) -> np.ndarray:
        return np.clip(self.assign(X) @ self.quality_, 0.0, 1.0)

    def add_expert(self, name: str, X_probe: np.ndarray, y_probe: np.ndarray) -> "ClusterRouter":
        """Onboard expert ``name`` from probe prompts ``X_probe`` (n, d) and its quality ``y_probe`` (n,).

        The probes are assigned to the existing clusters (hard); the new per-cluster quality is shrunk
        toward the probe mean plus each cluster's difficulty learnt from the other experts.
        """
        self.check_fitted()
        if name in self.experts_:
            raise RouterError(f"expert {name!r} is already in this router")
        X_probe = self.check_X(X_probe)
        y = np.asarray(y_probe, dtype=np.float64).reshape(-1, 1)
        if y.shape[0] != X_probe.shape[0]:
            raise RouterError(f"{X_probe.shape[0]} probe prompts but {y.shape[0]} grades")
        seen = ~np.isnan(y[:, 0])
        if not seen.any():
            raise RouterError(f"no graded probe for expert {name!r}")
        if np.any((y[seen] < 0) | (y[seen] > 1)):
            raise RouterError("probe grades must be in [0, 1]")
        labels = sq_dists(X_probe, self.centroids_).argmin(axis=1)
        weights = np.eye(self.centroids_.shape[0])[labels]
        sums, counts = _cluster_stats(weights, y)
        # the probe mean is biased by which clusters the probes fell in: correct by their difficulty
        gm = float(np.mean(y[seen, 0] - self.difficulty_[labels[seen]]))
        q = self._shrink(sums, counts, np.array([[gm]]))
        self.quality_ = np.concatenate([self.quality_, q], axis=1)
        self.counts_ = np.concatenate([self.counts_, counts], axis=1)
        self.global_mean_ = np.concatenate([self.global_mean_, [np.clip(gm, 0.0, 1.0)]])
        self.experts_ = list(self.experts_) + [name]
        return self


def _cluster_stats(weights: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums and counts (n_clusters, m) of observed quality."""
    seen = ~np.isnan(Y)
    return weights.T @ np.where(seen, Y, 0.0), weights.T @ seen.astype(np.float64)


def _difficulty(sums: np.ndarray, counts: np.ndarray, global_mean: np.ndarray) -> np.ndarray:
    """How much better (+) or worse (-) than their global means the experts do in each cluster."""
    resid = sums - counts * global_mean[None, :]
    n = counts.sum(axis=1)
    return resid.sum(axis=1) / (n + 1.0)   # +1: empty clusters get 0
