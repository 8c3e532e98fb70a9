"""Synthetic routing data for router tests: prompts from two topics, three experts, missing labels."""
from __future__ import annotations

import numpy as np

EXPERTS = ["small", "medium", "large"]


def synthetic(n: int = 150, d: int = 8, seed: int = 0):
    """Prompts from two topics; 'small' is good on topic 0, 'large' on both; ~40% of labels missing."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)) + 2.0 * topic[:, None] * np.eye(d)[0]
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    p = np.stack([np.where(topic == 0, 0.8, 0.2), np.full(n, 0.5), np.full(n, 0.85)], axis=1)
    Y = (rng.random((n, 3)) < p).astype(np.float64)
    Y[rng.random((n, 3)) < 0.4] = np.nan
    Y[np.isnan(Y).all(axis=1), 2] = 1.0  # every row keeps at least one label
    cost = np.tile([0.001, 0.004, 0.02], (n, 1))
    return X, Y, cost, topic
