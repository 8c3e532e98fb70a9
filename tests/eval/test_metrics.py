"""Metrics on hand-made tables with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from eval import metrics as M


def test_auc_of_a_single_point_is_its_quality():
    assert M.auc(np.array([2.0]), np.array([0.7]), 1.0, 3.0) == pytest.approx(0.7)


def test_auc_is_an_exact_step_integral():
    # points (1, .5) (2, .8) (3, .6): q = .5 on [1, 2), .8 on [2, 4]; range [1, 4]
    cost, qual = np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.8, 0.6])
    assert M.auc(cost, qual, 1.0, 4.0) == pytest.approx((0.5 * 1 + 0.8 * 2) / 3)
    # below the cheapest point q is that point's quality; beyond c_max nothing counts
    assert M.auc(np.array([2.0, 5.0]), np.array([0.4, 0.9]), 1.0, 4.0) == pytest.approx(0.4)
    assert M.q_at(cost, qual, 0.1) == pytest.approx(0.5)
    assert M.q_at(cost, qual, 2.5) == pytest.approx(0.8)


def test_single_model_frontier_auc_and_random_mix():
    # two models: cheap (1, .5), dear (3, .9): step auc over [1, 3] = .5; mix line = (.5 + .9) / 2
    base = M.baselines(np.array([[0.5, 0.9]] * 4), np.array([[1.0, 3.0]] * 4), ["a", "b"])
    assert (base.c_min, base.c_max, base.best) == (1.0, 3.0, 1)
    single = M.single_model_frontier(base)
    assert single["auc"] == pytest.approx(0.5)
    assert single["random_mix_auc"] == pytest.approx(0.7)


def _table(seed=0, n=400, k=4):
    rng = np.random.default_rng(seed)
    true = (rng.random((n, k)) < np.linspace(0.3, 0.8, k)).astype(float)
    cost = np.linspace(1, 10, k) * (1 + rng.random((n, 1)))
    return true, cost


def test_oracle_beats_every_router_and_frontiers_are_monotone():
    true, cost = _table()
    base = M.baselines(true, cost, list("abcd"))
    grid = M.cost_weight_grid(cost)
    om, ofront, _ = M.oracle(true, cost, base, grid)
    rng = np.random.default_rng(1)
    for pred in (rng.random(true.shape), np.clip(true + rng.normal(0, 0.5, true.shape), 0, 1),
                 np.tile(base.model_quality, (len(true), 1))):
        m, front, _ = M.evaluate_scores(pred, true, cost, base, grid)
        assert om["auc"] >= m["auc"] - 1e-12
        assert om["max_quality"] >= m["max_quality"] - 1e-12
        xs = np.sort(np.unique(front.cost))
        q = M.q_at(front.cost, front.quality, xs)
        assert np.all(np.diff(q) >= 0)
    # the oracle also beats the single-model frontier
    assert om["auc"] >= M.single_model_frontier(base)["auc"]


def test_sweep_ends_are_max_quality_and_cheapest():
    true, cost = _table()
    grid = M.cost_weight_grid(cost)
    front, choices = M.sweep(true, true, cost, grid)
    assert front.quality[0] == pytest.approx(true.max(axis=1).mean())
    assert np.all(choices[-1] == cost.argmin(axis=1))


def test_cost_to_match_best_none_when_never_matched():
    true, cost = _table()
    base = M.baselines(true, cost, list("abcd"))
    # always picking the worst model never matches the best single model
    pred = np.zeros_like(true)
    pred[:, 0] = 1.0
    front, _ = M.sweep(pred, true, cost, np.array([0.0]))
    assert M.frontier_metrics(front, base)["cost_to_match_best"] is None
    # the oracle matches it at less than its cost
    om, _, _ = M.oracle(true, cost, base, M.cost_weight_grid(cost))
    assert 0 < om["cost_to_match_best"] < 1


def test_gap_closed():
    assert M.gap_closed(0.6, 0.5, 0.7) == pytest.approx(0.5)
    assert M.gap_closed(0.6, 0.5, 0.5) is None


def _two_model(n=1000, seed=0, weak_wins=True):
    rng = np.random.default_rng(seed)
    weak = (rng.random(n) < 0.5).astype(float)
    strong = np.maximum(weak, (rng.random(n) < 0.6).astype(float))
    if weak_wins:
        flip = rng.random(n) < 0.05
        strong[flip] = 0.0
    return np.stack([strong, weak], axis=1)


def test_apgr_of_random_is_about_half_and_cpt_matches():
    true = _two_model()
    rng = np.random.default_rng(3)
    values = [M.apgr(rng.random(len(true)), true, 0, 1) for _ in range(20)]
    assert np.mean(values) == pytest.approx(0.5, abs=0.02)
    # a constant preference is one tie group: the straight line, exactly 0.5, CPT(x) = x
    assert M.apgr(np.zeros(len(true)), true, 0, 1) == pytest.approx(0.5)
    assert M.cpt(np.zeros(len(true)), true, 0, 1, 0.5) == pytest.approx(50.0)
    assert M.cpt(np.zeros(len(true)), true, 0, 1, 0.8) == pytest.approx(80.0)


def test_apgr_of_perfect_router():
    # when the strong model is never worse, the perfect router recovers the whole gap after a share g
    # of calls (the prompts it gains), then stays at PGR 1: APGR = 1 - g / 2, which is the best possible
    true = _two_model(weak_wins=False)
    gain = true[:, 0] - true[:, 1]
    g = gain.mean()
    perfect = M.apgr(gain, true, 0, 1)
    assert perfect == pytest.approx(1 - g / 2)
    assert M.cpt(gain, true, 0, 1, 1.0) == pytest.approx(100 * g)
    # recovering the gap takes at least the gained share of calls; the inverse ordering is worst
    assert M.apgr(-gain, true, 0, 1) == pytest.approx(g / 2)
    # when the weak model sometimes wins, the perfect ordering overshoots the strong model (PGR > 1)
    true = _two_model(weak_wins=True)
    gain = true[:, 0] - true[:, 1]
    x, y = M.pgr_curve(gain, true, 0, 1)
    assert y.max() > 1 and y[-1] == pytest.approx(1.0) and y[0] == pytest.approx(0.0)
    rng = np.random.default_rng(5)
    best = M.apgr(gain, true, 0, 1)
    assert all(best >= M.apgr(gain + rng.normal(0, s, len(gain)), true, 0, 1) for s in (0.3, 1.0, 3.0))


def test_two_model_metrics_use_the_strong_model_as_the_better_one():
    true = _two_model()[:, ::-1]  # strong model in column 1
    base = M.baselines(true, np.tile([1.0, 5.0], (len(true), 1)), ["weak", "strong"])
    assert M.strong_weak(base) == (1, 0)
    out = M.two_model_metrics(true, true, base)
    assert out["apgr"] > 0.9 and out["cpt50"] < 50
