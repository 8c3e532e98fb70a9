"""Bandit and RL policy: deterministic exploration with propensities, partial_fit, importance weighting."""
from __future__ import annotations

import numpy as np
import pytest

from routers.bandit import LinUCBRouter
from routers.base import RouterError
from routers.rl_policy import PolicyRouter
from tests.support.router_data import EXPERTS, synthetic


@pytest.mark.parametrize("cls", [LinUCBRouter, PolicyRouter])
def test_choose_is_deterministic_with_valid_propensity(cls):
    X, Y, cost, _ = synthetic()
    router = cls(**({"epochs": 40} if cls is PolicyRouter else {})).fit(X, Y, cost=cost, experts=EXPERTS)
    price = np.array([0.001, 0.004, 0.02])
    picks = [router.choose(X[i % 10], f"req-{i}", price, cost_weight=5.0) for i in range(200)]
    assert picks == [router.choose(X[i % 10], f"req-{i}", price, cost_weight=5.0) for i in range(200)]
    for (a, p), i in zip(picks, range(200)):
        probs = router.action_probabilities(X[i % 10][None, :], price[None, :], 5.0)[0]
        assert 0 < p <= 1 and p == pytest.approx(probs[a])
    a, _ = router.choose(X[0], "r", price, eligible=np.array([False, True, False]))
    assert a == 1


def test_bandit_partial_fit_is_additive_and_exposes_stats():
    X, Y, cost, _ = synthetic()
    rows, cols = np.nonzero(~np.isnan(Y))
    half = len(rows) // 2
    one = LinUCBRouter().fit(X, Y, experts=EXPERTS)
    two = LinUCBRouter().fit(X, Y, experts=EXPERTS)
    one.partial_fit(X[rows], cols, Y[rows, cols], np.full(len(rows), 1 / 3))
    two.partial_fit(X[rows[:half]], cols[:half], Y[rows[:half], cols[:half]])
    two.partial_fit(X[rows[half:]], cols[half:], Y[rows[half:], cols[half:]])
    np.testing.assert_allclose(one.A_, two.A_)
    np.testing.assert_allclose(one.predict_scores(X), two.predict_scores(X), atol=1e-8)
    assert one.A_.shape == (3, X.shape[1] + 1, X.shape[1] + 1) and one.b_.shape == (3, X.shape[1] + 1)
    with pytest.raises(RouterError):
        one.partial_fit(X[:2], [0, 5], [1.0, 0.0])


def test_policy_importance_weighting_corrects_logging_bias():
    """Logged by a policy that mostly picks 'large': the IW-trained scores still rank correctly."""
    X, Y, cost, topic = synthetic(n=600)
    rng = np.random.default_rng(1)
    full = np.where(np.isnan(Y), (rng.random(Y.shape) < 0.5).astype(float), Y)
    probs = np.array([0.1, 0.1, 0.8])
    actions = rng.choice(3, size=len(X), p=probs)
    router = PolicyRouter(epochs=150).fit_logged(X, actions, full[np.arange(len(X)), actions], probs[actions],
                                                 experts=EXPERTS)
    s = router.predict_scores(X)
    assert s[topic == 0, 0].mean() > s[topic == 1, 0].mean()
    with pytest.raises(RouterError):
        router.partial_fit(X[:1], [0], [1.0], [0.0])
