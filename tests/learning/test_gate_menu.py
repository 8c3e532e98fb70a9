"""The gate judges each router on the experts graded on a prompt (``menu="graded"``), not on imputed means."""
from __future__ import annotations

import numpy as np

from router_gateway.learning.gate import gate, prompt_values

COST = np.array([0.5, 0.5])  # equal prices: the comparison is about grades alone


def _partial_labels(n: int = 400, seed: int = 0):
    """Expert 0 is graded on every prompt (it answers live) at 0.5. Expert 1 is perfect on topic A and
    useless on topic B, but was graded on only a tenth of the A prompts and on every B prompt (what a
    shadow policy that labels where it is unsure leaves behind): its mean grade is low."""
    rng = np.random.default_rng(seed)
    topic_a = rng.random(n) < 0.5
    Y = np.full((n, 2), np.nan)
    Y[:, 0] = 0.5
    graded_1 = ~topic_a | (rng.random(n) < 0.1)
    Y[graded_1, 1] = np.where(topic_a[graded_1], 1.0, 0.0)
    live = np.tile([1.0, 0.0], (n, 1))                        # always expert 0
    cand = np.where(topic_a[:, None], [0.0, 1.0], [1.0, 0.0])  # expert 1 on topic A: right everywhere
    return Y, live, cand


def test_graded_menu_credits_a_router_only_with_grades_it_got():
    rng = np.random.default_rng(3)
    Y = np.where(rng.random((50, 4)) < 0.5, rng.random((50, 4)), np.nan)
    Y[np.isnan(Y).all(axis=1), 0] = 0.3  # every labelled prompt has a grade
    pred = rng.random((50, 4))
    values = prompt_values(pred, Y, np.zeros(4), weights=np.array([0.0]), menu="graded")
    best_graded = np.nanargmax(np.where(np.isnan(Y), -np.inf, pred), axis=1)
    assert np.allclose(values, Y[np.arange(50), best_graded])


def test_imputed_means_call_a_better_router_worse_and_the_graded_menu_does_not():
    Y, live, cand = _partial_labels()
    imputed = gate(live, cand, Y, COST, min_rows=10, menu="imputed")
    graded = gate(live, cand, Y, COST, min_rows=10, menu="graded")
    assert imputed.gain < 0 and not imputed.passed  # expert 1's low mean stands in for its A grades
    assert graded.gain > 0 and graded.passed


def test_graded_menu_still_sees_a_worse_candidate():
    Y, live, cand = _partial_labels()
    worse = 1.0 - cand  # expert 1 on topic B, where it is graded 0
    result = gate(live, worse, Y, COST, min_rows=10, menu="graded")
    assert result.gain < 0 and not result.passed
