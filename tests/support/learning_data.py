"""Labelled prompts for the learning loop's unit tests: three topics, each answered right by one expert."""
from __future__ import annotations

import numpy as np

from router_gateway.learning.graders import Grade
from router_gateway.learning.loop import LearningLoop
from router_gateway.learning.promote import ArtifactPromoter
from router_gateway.learning.settings import (
    GateSettings,
    LearningSettings,
    PromoteSettings,
    RetrainSettings,
)
from router_gateway.learning.store import LabelStore
from routers.baselines import StrongestRouter

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


def make_loop(tmp_path, store, min_rows=20, z=1.0, confirm=1, gate_settings=None):
    """A retrain loop over ``store`` (knn k=10, 5 folds), live on `strongest`, artifacts under tmp_path."""
    settings = LearningSettings(retrain=RetrainSettings(router="knn", params={"k": 10}, every_labels=50,
                                                        min_labels=50, folds=5),
                                promote=PromoteSettings(gate=gate_settings or GateSettings(min_rows=min_rows, z=z,
                                                                                           confirm=confirm),
                                                        artifacts=str(tmp_path / "art")))
    baseline = StrongestRouter.from_priors(EXPERTS, [0.3, 0.3, 0.4], 16)
    promoter = ArtifactPromoter(tmp_path / "art", EXPERTS, {"name": "test", "dim": 16}, baseline)
    return LearningLoop(settings, store, EXPERTS, NORM_COST, 0.0, promoter), promoter
