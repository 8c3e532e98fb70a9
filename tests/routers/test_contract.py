"""One contract suite run over every registered router (scikit-learn ``parametrize_with_checks`` style)."""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from routers.artifact import load_artifact, save_artifact
from routers.base import RouterError
from routers.registry import available_routers, make_router, router_class
from tests.support.router_data import EXPERTS, synthetic

EMBEDDER = {"name": "test-embedder", "dim": 8, "backend": "test"}
#: hyperparameters a router needs to be fitted at all, or to keep the suite fast
PARAMS = {
    "fixed": {"expert": "medium"},
    "knn": {"k": 10},
    "domain": {"n_pseudo_domains": 4},
    "classifier": {"max_epochs": 60},
    "stacked": {"inner_folds": 2, "knn_k": 10},
    "policy": {"epochs": 40},
}


@functools.lru_cache(maxsize=None)
def _fitted_state(name: str):
    X, Y, cost, _ = synthetic()
    router = make_router(name, **PARAMS.get(name, {}))
    router.fit(X, Y, cost=cost, experts=EXPERTS)
    return router, X


def fitted(name: str, fresh: bool = False):
    """A router fitted on the synthetic data (cached per name unless ``fresh``)."""
    if not fresh:
        return _fitted_state(name)
    X, Y, cost, _ = synthetic()
    router = make_router(name, **PARAMS.get(name, {}))
    router.fit(X, Y, cost=cost, experts=EXPERTS)
    return router, X


ROUTERS = available_routers()


@pytest.mark.parametrize("name", ROUTERS)
def test_predict_shape_and_range(name):
    router, X = fitted(name)
    scores = router.predict_scores(X[:17])
    assert scores.shape == (17, len(EXPERTS))
    assert np.all(np.isfinite(scores)) and scores.min() >= 0.0 and scores.max() <= 1.0
    assert router.experts_ == EXPERTS and router.n_features_in_ == X.shape[1]
    one = router.predict_scores(X[0])
    assert one.shape == (1, len(EXPERTS))


@pytest.mark.parametrize("name", ROUTERS)
def test_params_round_trip(name):
    router = make_router(name, **PARAMS.get(name, {}))
    params = router.get_params()
    json.dumps(params)  # hyperparameters must be JSON-serialisable
    clone = make_router(name, **params)
    assert clone.get_params() == params
    with pytest.raises(RouterError):
        router.set_params(no_such_hyperparameter=1)


@pytest.mark.parametrize("name", ROUTERS)
def test_artifact_round_trip(name, tmp_path):
    router, X = fitted(name)
    path = save_artifact(router, tmp_path / "artifact", embedder=EMBEDDER, extra={"note": "test"})
    loaded, meta = load_artifact(path)
    assert type(loaded) is type(router)
    assert meta["router_type"] == router.router_type and meta["experts"] == EXPERTS
    assert json.loads(json.dumps(meta["params"])) == json.loads(json.dumps(router.get_params()))
    np.testing.assert_array_equal(loaded.predict_scores(X), router.predict_scores(X))
    assert not any(p.suffix in (".pkl", ".pickle", ".joblib") for p in path.iterdir())


@pytest.mark.parametrize("name", ROUTERS)
def test_refuses_wrong_dimension(name):
    router, X = fitted(name)
    with pytest.raises(RouterError):
        router.predict_scores(np.zeros((2, X.shape[1] + 1), dtype=np.float32))


@pytest.mark.parametrize("name", ROUTERS)
def test_not_fitted(name):
    router = make_router(name, **PARAMS.get(name, {}))
    with pytest.raises(RouterError):
        router.predict_scores(np.zeros((1, 8), dtype=np.float32))


@pytest.mark.parametrize("name", ROUTERS)
def test_deterministic(name):
    a, X = fitted(name, fresh=True)
    b, _ = fitted(name, fresh=True)
    np.testing.assert_allclose(a.predict_scores(X), b.predict_scores(X), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ROUTERS)
def test_rejects_bad_training_data(name):
    X, Y, cost, _ = synthetic()
    router = make_router(name, **PARAMS.get(name, {}))
    with pytest.raises(RouterError):
        router.fit(X, Y * 2.0 + 0.5, cost=cost, experts=EXPERTS)
    with pytest.raises(RouterError):
        router.fit(X[:-1], Y, cost=cost[:-1], experts=EXPERTS)


# baselines read no prompt; the bandit is left out as it always was
LEARNERS = [n for n in ROUTERS if not router_class(n).baseline and n != "bandit"]


@pytest.mark.parametrize("name", LEARNERS)
def test_learns_the_topic(name):
    """Learning routers must score 'small' higher on topic 0 than on topic 1."""
    router, _ = fitted(name)
    Xt, _, _, topic = synthetic(n=400, seed=1)
    s = router.predict_scores(Xt)[:, 0]
    assert s[topic == 0].mean() > s[topic == 1].mean() + 0.05
