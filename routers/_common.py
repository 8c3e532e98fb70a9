"""Helpers shared by the learning routers: NaN-aware statistics, k-means, softmax, inner folds.

Pure numpy (scikit-learn only inside functions that run at fit time).
"""
from __future__ import annotations

import numpy as np

#: quality assumed for an expert that was never observed at all
UNSEEN_QUALITY = 0.5


def expert_means(Y: np.ndarray) -> np.ndarray:
    """Mean observed quality per expert (column), ``UNSEEN_QUALITY`` where a column is all NaN."""
    Y = np.asarray(Y, dtype=np.float64)
    seen = ~np.isnan(Y)
    counts = seen.sum(axis=0)
    sums = np.where(seen, Y, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), UNSEEN_QUALITY)


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def sq_dists(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (n, m) between rows of X and rows of C."""
    X = np.asarray(X, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    d = (X * X).sum(1)[:, None] - 2.0 * X @ C.T + (C * C).sum(1)[None, :]
    return np.maximum(d, 0.0)


def kmeans(X: np.ndarray, k: int, seed: int = 0, n_init: int = 3, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """K-means centroids (k, d) and labels (n,); scikit-learn at fit time, deterministic for a seed."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    k = int(max(1, min(k, X.shape[0])))
    km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed)
    with threadpool_limits(1):  # a few thousand points: threads only contend (6x slower on a busy 2-core box)
        labels = km.fit_predict(np.asarray(X, dtype=np.float64))
    return km.cluster_centers_.astype(np.float64), labels.astype(np.int64)


def inner_folds(n: int, n_folds: int, seed: int) -> np.ndarray:
    """Seeded fold ids (n,) for cross-validation inside the training data."""
    return np.random.default_rng(seed).permutation(n) % n_folds

