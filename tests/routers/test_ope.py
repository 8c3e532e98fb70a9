"""Off-policy estimators recover a target policy's true value from uniformly logged data."""
from __future__ import annotations

import numpy as np
import pytest

from routers import ope


def logged(n=4000, k=3, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.random((n, k)) * np.array([0.3, 0.6, 0.9])      # expected reward per action
    actions = rng.integers(0, k, n)
    props = np.full(n, 1.0 / k)
    rewards = (rng.random(n) < true[np.arange(n), actions]).astype(float)
    return true, actions, props, rewards


def test_estimators_cover_the_true_value():
    true, actions, props, rewards = logged()
    target = ope.greedy_probs(true)                    # the best action per row
    value = float(true.max(axis=1).mean())
    est = ope.evaluate_policy(rewards, props, actions, target, q_hat=np.full(true.shape, 0.4))
    for name in ("ips", "snips", "dr"):
        e = est[name]
        assert e.lo <= value <= e.hi, (name, e, value)
        assert e.hi - e.lo < 0.1
    good_model = ope.doubly_robust(rewards, props, actions, target, true)
    assert good_model.hi - good_model.lo < est["ips"].hi - est["ips"].lo  # a good reward model cuts variance


def test_logging_policy_value_is_its_mean_reward():
    true, actions, props, rewards = logged()
    e = ope.ips(rewards, props, props)
    assert e.value == pytest.approx(rewards.mean())


def test_refuses_bad_propensities():
    with pytest.raises(ValueError):
        ope.ips([1.0], [0.0], [1.0])
    with pytest.raises(ValueError):
        ope.ips([1.0, 0.0], [0.5], [1.0])
