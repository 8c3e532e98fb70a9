"""Router abilities are declared (``Router`` class flags), and the declarations are honest."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from routers.base import Router, RouterError
from routers.registry import available_routers, router_class

#: each ability flag and the methods a router that declares it must define (and one that does not
#: declare it must not): the flag is what callers read, so it has to say the truth
METHODS = {
    "chooses": ("choose",),
    "gives_probabilities": ("action_probabilities",),
    "learns_online": ("partial_fit",),
    "learns_from_logs": ("fit_logged",),
    "grows_experts": ("add_expert",),
    "keeps_neighbours": ("neighbours",),
}


class PlainRouter(Router):
    """A new router that declares nothing: it must get the documented defaults."""

    router_type = "plain"

    def _fit(self, X, Y, cost):
        self.mean_ = np.nanmean(Y, axis=0)

    def predict_scores(self, X):
        return np.tile(self.mean_, (self.check_X(X).shape[0], 1))


def test_a_router_that_declares_nothing_gets_the_defaults():
    assert PlainRouter.abilities() == {name: False for name in Router.ABILITIES}
    assert PlainRouter.online_stats == ()
    router = PlainRouter().fit(np.eye(3, dtype=np.float32), np.full((3, 2), 0.5), experts=["a", "b"])
    assert router.abilities() == PlainRouter.abilities()  # instances read the class's declaration
    with pytest.raises(RouterError, match="needs an artifact"):  # not a baseline: no build from priors
        PlainRouter.from_experts(["a", "b"], [0.5, 0.5], [1.0, 2.0], 3)


@pytest.mark.parametrize("name", available_routers())
def test_declared_abilities_match_the_methods(name):
    cls = router_class(name)
    for flag, methods in METHODS.items():
        for method in methods:
            assert hasattr(cls, method) == getattr(cls, flag), f"{name}: {flag}={getattr(cls, flag)} but {method}"
    takes = "domains" in inspect.signature(cls.fit).parameters
    assert takes == cls.takes_domains, f"{name}: takes_domains={cls.takes_domains}"
    assert (cls.from_experts.__func__ is not Router.from_experts.__func__) == cls.baseline, name
    assert set(cls.online_stats) <= set(cls.state_attrs) and (not cls.online_stats or cls.learns_online), name
    assert not cls.stochastic or cls.baseline, f"{name}: only a baseline gets a per-request draw"


@pytest.mark.parametrize("name", [n for n in available_routers() if router_class(n).baseline])
def test_every_baseline_builds_from_priors_and_prices(name):
    experts, priors, prices = ["small", "medium", "large"], [0.4, 0.6, 0.9], [0.1, 1.0, 10.0]
    params = {"expert": "medium"} if "expert" in router_class(name)._param_names() else {}
    router = router_class(name).from_experts(experts, priors, prices, 4, **params)
    scores = router.predict_scores(np.ones((2, 4), dtype=np.float32))
    assert scores.shape == (2, 3) and np.all((scores >= 0) & (scores <= 1))
    assert router.experts_ == experts and all(router.get_params()[k] == v for k, v in params.items())


def test_baseline_scores_follow_their_inputs():
    experts = ["small", "medium", "large"]
    x = np.ones((1, 4), dtype=np.float32)
    strongest = router_class("strongest").from_experts(experts, [0.4, 0.9, 0.6], [0.1, 1.0, 10.0], 4)
    cheapest = router_class("cheapest").from_experts(experts, [0.4, 0.9, 0.6], [5.0, 1.0, 10.0], 4)
    fixed = router_class("fixed").from_experts(experts, [0.4, 0.9, 0.6], [0.1, 1.0, 10.0], 4, expert="large")
    assert strongest.predict_scores(x)[0].argmax() == 1
    assert cheapest.predict_scores(x)[0].argmax() == 1
    assert fixed.predict_scores(x)[0].tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(RouterError, match="not among"):
        router_class("fixed").from_experts(experts, [0.4, 0.9, 0.6], [0.1, 1.0, 10.0], 4, expert="nobody")
