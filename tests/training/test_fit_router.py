"""fit_router hands a table's task labels, and logged choices, to the routers that declare they take them."""
from __future__ import annotations

import numpy as np

from router_gateway.training.data import TrainingData
from router_gateway.training.pipeline import fit_router
from routers.registry import make_router

EXPERTS = ["small", "big"]


def table_data(n: int = 60) -> tuple[np.ndarray, TrainingData]:
    rng = np.random.default_rng(0)
    math = np.arange(n) % 2 == 0
    X = rng.normal(size=(n, 8)) + 3.0 * math[:, None] * np.eye(8)[0]
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    Y = np.stack([np.where(math, 0.2, 0.8), np.full(n, 0.7)], axis=1)
    data = TrainingData("table", [f"p{i}" for i in range(n)], EXPERTS, Y, np.full((n, 2), 1e-3), "digest",
                        domains=["math" if m else "chat" for m in math])
    return X, data


def test_stacked_gets_the_task_labels_like_domain():
    X, data = table_data()
    domain = fit_router(make_router("domain"), X, data)
    stacked = fit_router(make_router("stacked", inner_folds=2, knn_k=5), X, data)
    # a domain router fitted without labels would have k-means pseudo-domains ("cluster-<i>")
    assert sorted(domain.domains_) == ["chat", "math"]
    assert sorted(stacked.state_arrays()["domain__domains_"]) == ["chat", "math"]


def test_a_router_that_does_not_take_domains_is_fitted_without_them():
    X, data = table_data()
    knn = fit_router(make_router("knn", k=5), X, data)  # KNNRouter.fit has no domains argument
    assert knn.predict_scores(X[:2]).shape == (2, 2)


def test_logged_choices_go_to_fit_logged_only_where_declared():
    X, data = table_data()
    data.actions = np.arange(len(X)) % 2
    data.propensities = np.full(len(X), 0.5)
    bandit = fit_router(make_router("bandit", n_components=4), X, data)
    # fit_logged sees only the logged action per row: the bandit's arms got half the rows each
    assert bandit.A_[0, -1, -1] == bandit.reg + len(X) / 2
    knn = fit_router(make_router("knn", k=5), X, data)  # no fit_logged: the full matrix
    assert np.isfinite(knn.Y_).all()
