"""Labelled prompts for the learning loop's unit tests: three topics, each answered right by one expert."""
from __future__ import annotations

import numpy as np

from router_gateway.learning.graders import Grade
from router_gateway.learning.store import LabelStore

EXPERTS = ["cheap", "mid", "dear"]
NORM_COST = np.array([0.1, 0.4, 1.0])


def topic_data(n: int, seed: int = 0):
    """Three topics; on topic t only expert t is right (so the best choice depends on the prompt)."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 16)) * 0.1
    X[np.arange(n), topic] += 1.0
    Y = (topic[:, None] == np.arange(3)[None, :]).astype(float)
    Y = np.where(rng.random(Y.shape) < 0.05, 1 - Y, Y)  # a little noise
    return X.astype(np.float32), Y


def fill(store: LabelStore, X, Y, experts_per_row=None):
    for i in range(len(X)):
        cols = range(3) if experts_per_row is None else experts_per_row[i]
        grades = [Grade(EXPERTS[j], float(Y[i, j]), "judge:x", 0.001) for j in cols]
        store.add(f"d{i:05d}", X[i], grades, answer_costs={EXPERTS[j]: 0.01 for j in cols}, live_expert="dear",
                  prompt=f"prompt {i}", ts=float(i))
