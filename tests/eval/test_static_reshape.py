"""The zero-cost reshapings of the static table (eval/static_tuned_eval.py's ``reshape``) do to the
pooled outputs what their names say: they act on rows, so the pooled vectors move the same way."""
from __future__ import annotations

import numpy as np
import pytest

from eval.static_tuned_eval import reshape
from router_gateway.embedding.static_tuning import mean_rows


@pytest.fixture()
def fitted():
    rng = np.random.default_rng(0)
    table = (rng.normal(size=(60, 6)) * [3.0, 1.0, 1.0, 0.5, 0.2, 0.1] + 2.0).astype(np.float32)
    encodings = [list(rng.integers(0, 60, size=rng.integers(3, 12))) for _ in range(400)]
    targets = rng.normal(size=(400, 6)) * [1.0, 2.0, 0.5, 1.0, 1.0, 3.0] + 1.0
    return table, encodings, targets


def test_center_leaves_the_training_outputs_without_a_mean(fitted):
    table, encodings, targets = fitted
    pooled = mean_rows(reshape(table, encodings, targets, "center"), encodings)
    np.testing.assert_allclose(pooled.mean(axis=0), 0.0, atol=1e-4)
    assert np.abs(mean_rows(table, encodings).mean(axis=0)).min() > 1.0  # it had one


def test_recolor_gives_each_principal_direction_the_targets_spread(fitted):
    table, encodings, targets = fitted
    before = mean_rows(table, encodings).astype(np.float64)
    _, directions = np.linalg.eigh(np.cov(before, rowvar=False, bias=True))
    after = mean_rows(reshape(table, encodings, targets, "recolor"), encodings).astype(np.float64)
    spread = lambda X: ((X - X.mean(axis=0)) @ directions).var(axis=0)  # noqa: E731
    np.testing.assert_allclose(spread(after), spread(targets), rtol=1e-3)
    np.testing.assert_allclose(after.mean(axis=0), targets.mean(axis=0), atol=1e-4)
    assert not np.allclose(spread(before), spread(targets), rtol=0.1)


def test_whiten_makes_the_outputs_spread_alike_and_rejects_unknown_names(fitted):
    table, encodings, targets = fitted
    after = mean_rows(reshape(table, encodings, targets, "whiten:1e-9"), encodings).astype(np.float64)
    np.testing.assert_allclose(np.cov(after, rowvar=False, bias=True), np.eye(6), atol=1e-3)
    with pytest.raises(ValueError, match="unknown reshaping"):
        reshape(table, encodings, targets, "rotate")
