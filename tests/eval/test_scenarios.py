"""Onboarding and online scenarios on a small synthetic table (no embedder needed)."""
from __future__ import annotations

import numpy as np
import pytest

from eval import scenarios
from routers.base import Router
from routers.data import RoutingTable
from routers.registry import available_routers


def synthetic_table(n=600, k=4, d=16, seed=0):
    """Prompts in k topics; expert j is good on topic j, costs rise with j."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, k, n)
    centres = rng.normal(size=(k, d))
    X = centres[topic] + 0.3 * rng.normal(size=(n, d))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    p = np.full((n, k), 0.3)
    p[np.arange(n), topic] = 0.9
    scores = (rng.random((n, k)) < p).astype(float)
    costs = np.tile(np.linspace(1e-5, 1e-4, k), (n, 1))
    models = [f"m{j}" for j in range(k)]
    table = RoutingTable("synthetic", [f"p{i}" for i in range(n)], np.arange(n) % 5,
                         [f"t{t}" for t in topic], models, scores, costs)
    return table, X


@pytest.mark.skipif("cluster" not in available_routers(), reason="cluster router not registered")
def test_onboarding_keeps_most_of_the_auc():
    table, X = synthetic_table()
    out = scenarios.run_onboarding(table, X, seed=0, params={"n_clusters": 4})
    assert len(out["held_back"]) == 1 and len(out["kept"]) == 3
    assert max(out["probes_per_fold"]) <= 0.05 * len(table)
    assert out["auc_ratio"] > 0.8
    assert out == scenarios.run_onboarding(table, X, seed=0, params={"n_clusters": 4})


class FakeBandit(Router):
    """A tiny bandit with the documented API: choose -> (index, propensity), partial_fit."""

    chooses = learns_online = True

    def __init__(self, seed=0):
        self.seed = seed

    def _fit(self, X, Y, cost):
        self.sums_ = np.nansum(Y, axis=0)
        self.counts_ = np.sum(~np.isnan(Y), axis=0)

    def predict_scores(self, X):
        return np.tile(self.sums_ / np.maximum(self.counts_, 1), (len(X), 1))

    def choose(self, x, request_id, cost=None, cost_weight=0.0):
        u = self.predict_scores(x)[0] - cost_weight * cost
        return int(np.argmax(u)), 1.0

    def partial_fit(self, X, actions, rewards, propensities=None):
        np.add.at(self.sums_, actions, rewards)
        np.add.at(self.counts_, actions, 1)
        return self


def test_online_replay_with_a_fake_bandit(monkeypatch):
    table, X = synthetic_table(n=400)
    monkeypatch.setattr(scenarios, "build_router", lambda name, seed, params=None: FakeBandit(seed))
    monkeypatch.setattr(scenarios, "available_routers", lambda: ["bandit", "policy"])
    out = scenarios.run_online(table, X, seed=1, n_warm=40, batch=10, retrain_every=100)
    for name in ("bandit", "policy"):
        v = out["learners"][name]
        assert "error" not in v, v
        assert v["mean_reward"] <= out["oracle_mean_reward"] + 1e-9
        assert abs(sum(v["choice_share"].values()) - 1) < 1e-6
    est = out["ope"]["estimates"]
    # a fixed expert's OPE from the logged stream is finite; 'true' is its replayed mean reward
    assert all(e["true"] is not None for e in est.values())
    assert out == scenarios.run_online(table, X, seed=1, n_warm=40, batch=10, retrain_every=100)
    assert "Online replay" in scenarios.scenario_markdown(out)


@pytest.mark.skipif("bandit" not in available_routers(), reason="bandit router not registered")
def test_online_replay_with_the_real_bandit(monkeypatch):
    table, X = synthetic_table(n=400)
    monkeypatch.setattr(scenarios, "available_routers", lambda: ["bandit", "knn"])  # skip slow torch training
    out = scenarios.run_online(table, X, seed=0, n_warm=50, batch=25, retrain_every=200, learners=("bandit",))
    b = out["learners"]["bandit"]
    assert "error" not in b, b
    # it learns: the second half beats a uniform choice
    uniform = float(np.mean(table.scores - 0.1 * table.costs / table.costs.mean(axis=0).max()))
    assert b["last_half_mean_reward"] > uniform
    ips = {k: v for k, v in out["ope"]["estimates"].items() if k.startswith("fixed:")}
    assert len(ips) == 4
