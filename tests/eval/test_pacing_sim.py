"""eval.pacing_sim's key-and-profile replay on a synthetic two-model table."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from eval.pacing_sim import replay_constant_picks, replay_key_and_profile

DAY = datetime(2026, 1, 15, tzinfo=timezone.utc).timestamp()


def _table(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    true = np.stack([rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.9, n)], axis=1)  # model 0 better
    pred = np.clip(true + rng.normal(0, 0.05, true.shape), 0, 1)
    costs = np.stack([np.full(n, 1e-3), np.full(n, 1e-4)], axis=1)  # ... and ten times dearer
    return pred, costs, true


def test_the_tight_key_and_the_profile_each_end_near_their_budget_without_refusals():
    pred, costs, true = _table()
    rows = np.arange(len(pred))
    owner = np.where(np.random.default_rng(1).random(len(pred)) < 0.5, "tight", "loose")
    free = replay_constant_picks(pred, costs, 0.0)
    own = {k: float(costs[rows[owner == k], free[owner == k]].sum()) for k in ("tight", "loose")}
    keys = {"tight": 0.4 * own["tight"], "loose": 0.9 * own["loose"]}
    profile = 0.5 * (own["tight"] + own["loose"])
    order = np.random.default_rng(2).permutation(len(pred))
    out = replay_key_and_profile(pred, costs, true, order, owner, keys, profile, 0.0, DAY)
    share = out["spend_vs_budget"]
    assert out["refused"] == 0
    assert 0.9 <= share["profile:shared"] <= 1.0 and 0.9 <= share["tight"] <= 1.0
    assert share["loose"] < 0.85  # the profile, not its own budget, held the loose key back
    assert out["bound"]["tight"] > 0.8 * (owner == "tight").sum()  # its own controller set its weight
