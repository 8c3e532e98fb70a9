"""The routing service acts on a router's declared abilities, never on its name or on the methods
it happens to have; baselines are built through the router registry."""
from __future__ import annotations

import asyncio
from typing import ClassVar

import numpy as np
import pytest

from router_gateway.domain.config import parse_config
from router_gateway.domain.config_yaml import ConfigError
from router_gateway.domain.protocol import parse_chat_request
from router_gateway.routing.router_set import LoadedRouter, build_router_set
from router_gateway.routing.service import RoutingService
from routers import registry
from routers.base import Router

CONFIG = """
experts:
  a: {base_url: http://x/v1, model: a, price: {input_per_mtok: 1, output_per_mtok: 1}, prior_quality: 0.9}
  b: {base_url: http://x/v1, model: b, price: {input_per_mtok: 1, output_per_mtok: 1}, prior_quality: 0.2}
routers: {r: {type: ROUTER}}
profiles: {auto: {router: r, cost_weight: 0}}
"""


class AllHealthy:
    def unavailable_reason(self, expert, config, stream=False):
        return None

    def load_penalty(self, expert, config):
        return 0.0


class ScoresA(Router):
    """Scores expert a best; its ``choose`` would always pick b (propensity 0.5)."""

    router_type = "scores_a"

    def _fit(self, X, Y, cost):
        pass

    def predict_scores(self, X):
        return np.tile([0.9, 0.1], (len(X), 1))

    def choose(self, x, request_id, cost=None, cost_weight=0.0, eligible=None):
        return 1, 0.5


class ChoosesB(ScoresA):
    router_type = "chooses_b"
    chooses = True


class RecordsInput(Router):
    """A baseline that remembers the vector the gateway hands it."""

    router_type = "records_input"
    baseline = True
    seen: ClassVar[list] = []

    def _fit(self, X, Y, cost):
        pass

    @classmethod
    def from_experts(cls, experts, priors, prices, n_features, **params):
        router = cls(**params)
        router.experts_, router.n_features_in_ = list(experts), int(n_features)
        return router

    def predict_scores(self, X):
        type(self).seen.append(np.array(X[0]))
        return np.tile(np.linspace(1, 0, len(self.experts_)), (len(X), 1))


class DrawsPerRequest(RecordsInput):
    router_type = "draws_per_request"
    stochastic = True
    seen: ClassVar[list] = []


def decide(service: RoutingService, request_id: str):
    request = parse_chat_request({"model": "auto", "messages": [{"role": "user", "content": "hello"}]})
    return asyncio.run(service.decide(request, 100, request_id))


def service_with(router: Router) -> RoutingService:
    config = parse_config(CONFIG.replace("ROUTER", "strongest"))
    router.experts_, router.n_features_in_ = list(config.experts), 1
    loaded = LoadedRouter("r", router, needs_embedding=False, columns={"a": 0, "b": 1})
    return RoutingService(config, {"r": loaded}, None, AllHealthy())


def test_a_router_that_declares_chooses_picks_for_itself():
    decision = decide(service_with(ChoosesB()), "req-1")
    assert decision.chosen == "b" and decision.propensity == 0.5


def test_a_router_with_choose_but_the_flag_off_is_not_sampled():
    decision = decide(service_with(ScoresA()), "req-1")
    assert decision.chosen == "a" and decision.propensity == 1.0  # the shared policy ranked: best score first


@pytest.fixture
def registered(monkeypatch):
    """Register the test baselines the way a new router is added: one line in the registry."""
    for cls in (RecordsInput, DrawsPerRequest):
        monkeypatch.setitem(registry._ROUTERS, cls.router_type, f"{__name__}:{cls.__name__}")
        monkeypatch.setattr(cls, "seen", [])


def build_service(router_type: str) -> RoutingService:
    config = parse_config(CONFIG.replace("ROUTER", router_type))
    routers = build_router_set(config, None)
    return RoutingService(config, routers, None, AllHealthy())


def test_a_registered_baseline_is_built_from_the_registry_without_an_embedding(registered):
    service = build_service("records_input")
    loaded = service.routers["r"]
    assert isinstance(loaded.router, RecordsInput) and not loaded.needs_embedding
    assert decide(service, "req-1").chosen == "a"
    assert decide(service, "req-2").chosen == "a"
    assert all(not x.any() for x in RecordsInput.seen)  # not stochastic: it is handed zeros


def test_a_stochastic_baseline_gets_a_draw_per_request_id(registered):
    service = build_service("draws_per_request")
    for request_id in ("req-1", "req-2", "req-1"):
        decide(service, request_id)
    first, second, replay = DrawsPerRequest.seen
    assert first.any() and not np.array_equal(first, second)
    assert np.array_equal(first, replay)  # a replayed request gets the same draw


def test_the_random_router_draws_per_request():
    service = build_service("random")
    chosen = {decide(service, f"req-{i}").chosen for i in range(40)}
    assert chosen == {"a", "b"}
    assert decide(service, "req-7").chosen == decide(service, "req-7").chosen


def test_router_types_are_checked_against_the_registry(registered):
    with pytest.raises(ConfigError, match="unknown router type 'nope'"):
        parse_config(CONFIG.replace("ROUTER", "nope"))
    with pytest.raises(ConfigError, match="needs an artifact"):
        parse_config(CONFIG.replace("ROUTER", "knn"))
    with pytest.raises(ConfigError, match="takes no artifact"):
        parse_config(CONFIG.replace("{type: ROUTER}", "{type: records_input, artifact: x}"))
    config = parse_config(CONFIG.replace("{type: ROUTER}", "{type: strongest, params: {k: 3}}"))
    with pytest.raises(ConfigError, match="no hyperparameter"):
        build_router_set(config, None)
