"""Profile budgets (profiles.<name>.budget): a hard ceiling on what a profile serves, and pacing on it.

In process (fake transport, hashing embedder); one test on a real Redis shared by two replicas."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from router_gateway.app import create_app
from router_gateway.capacity.pacing import BudgetPacer, budget_pacing
from router_gateway.container import GatewayOptions
from router_gateway.domain.config import ConfigError, parse_config
from router_gateway.state.keys import ApiKey, KeyStore
from tests.support.fakes import HashEmbedder, fake_connect

# each answer costs 0.015 USD (cheap) or 0.045 USD (strong): 10 prompt + 5 completion tokens
CONFIG = """
experts:
  cheap: {base_url: http://fake/v1, model: ok-cheap, price: {input_per_mtok: 1000, output_per_mtok: 1000}, prior_quality: 0.5}
  strong: {base_url: http://fake/v1, model: ok-strong, price: {input_per_mtok: 3000, output_per_mtok: 3000}, prior_quality: 0.6}
  broken: {base_url: http://fake/v1, model: error-x, price: {input_per_mtok: 3000, output_per_mtok: 3000}, prior_quality: 0.9}
routers: {s: {type: strongest}}
profiles:
  capped: {router: s, cost_weight: 0, experts: [strong], budget: {usd_per_day: 0.08}}
  paced: {router: s, cost_weight: 0, experts: [cheap, strong], budget: {usd_per_day: 1.0},
          pacing: {min_cost_weight: 0, max_cost_weight: 5}}
  failing: {router: s, cost_weight: 0, experts: [broken], budget: {usd_per_day: 1.0}}
  open: {router: s, cost_weight: 0, experts: [strong]}
logging: {path: LOG, flush_interval_ms: 20}
"""
MSG = [{"role": "user", "content": "hello there"}]
DAY_START = time.time() // 86400 * 86400


def _app(tmp_path, redis_url: str | None = None, keys_path=None):
    config = parse_config(CONFIG.replace("LOG", str(tmp_path / "log.db")))
    return create_app(GatewayOptions(config=config, connect=fake_connect(), embedder=HashEmbedder(),
                                     health_interval_s=0, watch_config=False, redis_url=redis_url,
                                     keys_path=keys_path or tmp_path / "keys.json"))


def _chat(client, model: str, **headers):
    return client.post("/v1/chat/completions", json={"model": model, "messages": MSG}, headers=headers)


def test_a_spent_profile_budget_refuses_with_insufficient_quota_and_other_profiles_still_serve(tmp_path):
    with TestClient(_app(tmp_path)) as client:
        assert _chat(client, "capped").status_code == 200  # 0.045 of 0.08
        assert _chat(client, "capped").status_code == 200  # 0.090: over, the next one is refused
        refused = _chat(client, "capped")
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == "insufficient_quota" and error["type"] == "insufficient_quota"
        assert "profile capped" in error["message"] and "0.08 USD" in error["message"]
        assert int(refused.headers["retry-after"]) >= 1
        assert _chat(client, "open").status_code == 200  # another profile, the same expert: not capped
        assert _chat(client, "strong").status_code == 200  # naming the expert is not the profile's spend


def test_the_profile_spend_survives_a_restart(tmp_path):
    for _ in range(2):
        with TestClient(_app(tmp_path)) as client:
            assert _chat(client, "capped").status_code == 200
    with TestClient(_app(tmp_path)) as client:  # seeded from the request log: 0.09 already spent today
        assert _chat(client, "capped").status_code == 429


def test_a_failed_request_gives_its_profile_hold_back(tmp_path):
    app = _app(tmp_path)
    with TestClient(app) as client:
        assert _chat(client, "failing").status_code == 502
        limiter = app.state.gateway.limiter
        assert limiter._held("profile:failing", time.time()) == (0.0, 0)
        assert limiter.spent("profile:failing") == (0.0, 0.0)


def test_profile_spend_ahead_of_its_day_raises_the_effective_cost_weight_without_any_key(tmp_path):
    app = _app(tmp_path)
    with TestClient(app) as client:
        app.state.gateway.pacer.clock = lambda: DAY_START + 3600  # plan at 1 h: ~4% of 1 USD
        weights, experts = [], []
        for _ in range(7):
            r = _chat(client, "paced")
            assert r.status_code == 200
            weights.append(float(r.headers["x-router-cost-weight"]))
            experts.append(r.headers["x-router-expert"])
        assert experts[0] == "strong" and experts[-1] == "cheap"
        assert weights[-1] > weights[0] and weights[-1] <= 5
        snapshot = app.state.gateway.pacer.snapshot()
        assert snapshot["profile:paced"]["budget"] == "profile:paced"
        assert snapshot["profile:paced"]["effective_cost_weight"] == pytest.approx(weights[-1], rel=1e-3)


class _Spend:
    def __init__(self, by_subject: dict[str, float]):
        self.by_subject = by_subject

    def spent(self, subject: str) -> tuple[float, float]:
        return self.by_subject.get(subject, 0.0), self.by_subject.get(subject, 0.0)


def _pace(spend: dict[str, float], key: ApiKey | None):
    config = parse_config(CONFIG.replace("LOG", "unused.db"))
    gateway = SimpleNamespace(spend=_Spend(spend), pacer=BudgetPacer(clock=lambda: DAY_START + 43200),
                              runtime=SimpleNamespace(config=config))
    pace = budget_pacing(gateway, key, "paced")
    return pace(config.profiles["paced"], 0.0) if pace is not None else None


@pytest.mark.parametrize("key_spent, profile_spent, binds", [(0.9, 0.1, "key"), (0.1, 0.9, "profile:paced")])
def test_when_key_and_profile_both_pace_the_greater_weight_wins(key_spent, profile_spent, binds):
    key = ApiKey(id="key_abc", hash="", budget_usd_day=1.0)
    both = _pace({"key_abc": key_spent, "profile:paced": profile_spent}, key)
    key_alone = _pace({"key_abc": key_spent}, ApiKey(id="key_abc", hash="", budget_usd_day=1.0))
    profile_alone = _pace({"profile:paced": profile_spent}, None)
    assert both.subject == (key.id if binds == "key" else binds)
    assert both.effective == pytest.approx(max(key_alone.effective, profile_alone.effective))
    assert both.effective > min(key_alone.effective, profile_alone.effective)


def test_no_budget_anywhere_means_no_pacing():
    config = parse_config(CONFIG.replace("LOG", "unused.db"))
    gateway = SimpleNamespace(spend=_Spend({}), pacer=BudgetPacer(), runtime=SimpleNamespace(config=config))
    assert budget_pacing(gateway, None, "open") is None
    assert budget_pacing(gateway, None, "paced") is not None


@pytest.mark.parametrize("budget", ["{}", "{usd_per_day: 0}", "{usd_per_month: -1}", "{usd_per_day: .nan}",
                                    "{usd_per_week: 3}"])
def test_a_profile_budget_needs_a_positive_finite_day_or_month(budget):
    with pytest.raises(ConfigError, match="profiles.capped.budget"):
        parse_config(CONFIG.replace("LOG", "x.db").replace("budget: {usd_per_day: 0.08}", f"budget: {budget}"))


@pytest.mark.redis
def test_replicas_share_a_profile_budget_through_redis(tmp_path):
    """Spend through replica a fills the profile's budget: replica b refuses too, and paces on it."""
    from tests.support.servers import start_redis
    redis = start_redis()
    url = f"redis://127.0.0.1:{redis.port}/0"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:  # the configs are parsed inside: a config error must not leave redis-server running
        apps = [_app(tmp_path / "a", url), _app(tmp_path / "b", url)]
        with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
            for app in apps:
                app.state.gateway.pacer.clock = lambda: DAY_START + 3600
            first_b = float(_chat(b, "paced").headers["x-router-cost-weight"])
            # with Redis a request's hold is replaced by its spend off the request path: wait for that
            # before the next admission, or the previous request's larger hold may still count
            settled = lambda client, app: client.portal.call(app.state.gateway.usage.aclose)  # noqa: E731
            assert _chat(a, "capped").status_code == 200
            settled(a, apps[0])
            assert _chat(a, "capped").status_code == 200
            settled(a, apps[0])
            assert _chat(b, "capped").status_code == 429  # b never served it: the spend is a's, in Redis
            for _ in range(6):
                assert _chat(a, "paced").status_code == 200
                settled(a, apps[0])
            total = sum(app.state.gateway.limiter.local.spent("profile:paced")[0] for app in apps)

            async def b_view() -> float:
                return apps[1].state.gateway.spend.spent("profile:paced")[0]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and b.portal.call(b_view) < total * 0.99:
                time.sleep(0.2)  # b refreshes the profile's spend from Redis in the background
            assert b.portal.call(b_view) == pytest.approx(total, rel=0.01)
            assert float(_chat(b, "paced").headers["x-router-cost-weight"]) > first_b
    finally:
        redis.stop()
