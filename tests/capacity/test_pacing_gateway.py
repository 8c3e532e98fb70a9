"""Budget pacing through the gateway (in process: fake expert behind the in-memory connection, hashing embedder)."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from router_gateway.app import create_app
from router_gateway.container import GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.state.keys import KeyStore
from tests.support.fakes import HashEmbedder, fake_connect
from tests.support.polling import wait_for

CONFIG = """
experts:
  cheap: {base_url: http://fake/v1, model: ok-cheap, price: {input_per_mtok: 1000, output_per_mtok: 1000}, prior_quality: 0.5}
  strong: {base_url: http://fake/v1, model: ok-strong, price: {input_per_mtok: 3000, output_per_mtok: 3000}, prior_quality: 0.6}
routers: {s: {type: strongest}}
profiles:
  auto: {router: s, cost_weight: 0, pacing: {min_cost_weight: 0, max_cost_weight: 5}}
  unpaced: {router: s, cost_weight: 0}
logging: {path: LOG, flush_interval_ms: 20}
"""
MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def client(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    secret, _ = store.create(name="team", budget_usd_day=1.0)
    admin, _ = store.create(name="ops", scopes=("admin",))
    config = parse_config(CONFIG.replace("LOG", str(tmp_path / "log.db")))
    app = create_app(GatewayOptions(config=config, connect=fake_connect(), embedder=HashEmbedder(),
                                    health_interval_s=0, watch_config=False, keys_path=store.path))
    with TestClient(app) as c:
        c.headers["authorization"] = f"Bearer {secret}"
        # one hour into the UTC day: the plan allows ~4% of the budget so far, whenever the test runs
        day_start = time.time() // 86400 * 86400
        app.state.gateway.pacer.clock = lambda: day_start + 3600
        c.admin = admin
        yield c


def test_spend_ahead_of_the_day_raises_the_effective_cost_weight_until_the_cheap_expert_wins(client):
    # each answer costs 0.015 (cheap) or 0.045 (strong) USD: the first is already ahead of a 1 USD/day plan
    # at 1 h (0.04 USD), and each one more pushes the weight up
    first = client.post("/v1/chat/completions", json={"model": "auto", "messages": MSG})
    assert first.status_code == 200 and first.headers["x-router-expert"] == "strong"
    weights, experts = [], []
    for _ in range(6):
        r = client.post("/v1/chat/completions", json={"model": "auto", "messages": MSG})
        assert r.status_code == 200
        weights.append(float(r.headers["x-router-cost-weight"]))
        experts.append(r.headers["x-router-expert"])
    assert weights[-1] > weights[0] >= 0 and weights[-1] <= 5
    assert experts[-1] == "cheap"
    data = client.get("/ui/data", headers={"authorization": f"Bearer {client.admin}"}).json()
    assert data["pacing"][next(iter(data["pacing"]))]["effective_cost_weight"] == pytest.approx(weights[-1], rel=1e-3)
    # a profile without pacing keeps its weight and says nothing
    plain = client.post("/v1/chat/completions", json={"model": "unpaced", "messages": MSG})
    assert plain.headers["x-router-expert"] == "strong" and "x-router-cost-weight" not in plain.headers


@pytest.mark.redis
def test_replicas_pace_on_the_spend_of_all_of_them(tmp_path):
    """Two replicas on one Redis: spend made through one raises the other's effective weight."""
    from tests.support.servers import start_redis
    store = KeyStore(tmp_path / "keys.json")
    secret, key = store.create(name="team", budget_usd_day=1.0)
    config = parse_config(CONFIG.replace("LOG", str(tmp_path / "log.db")))
    redis = start_redis()  # after what can fail: the test stops it only once inside its try
    apps = [create_app(GatewayOptions(config=config, connect=fake_connect(), embedder=HashEmbedder(),
                                      health_interval_s=0, watch_config=False, keys_path=store.path,
                                      redis_url=f"redis://127.0.0.1:{redis.port}/0")) for _ in range(2)]
    day_start = time.time() // 86400 * 86400
    auth = {"authorization": f"Bearer {secret}"}

    def weight(client) -> float:
        r = client.post("/v1/chat/completions", json={"model": "auto", "messages": MSG}, headers=auth)
        assert r.status_code == 200
        return float(r.headers["x-router-cost-weight"])
    try:
        with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
            for app in apps:  # a frozen clock: the weight moves only with the spend it sees
                app.state.gateway.pacer.clock = lambda: day_start + 3600
            first_b = weight(b)
            for _ in range(8):  # spend through replica a only
                weight(a)
            total = sum(apps[0].state.gateway.limiter.local.spent(key.id)[:1]) + 0.045

            async def b_view() -> float:
                return apps[1].state.gateway.spend.spent(key.id)[0]
            # b refreshes the key's spend from Redis in the background
            wait_for(lambda: b.portal.call(b_view) >= total * 0.99, timeout=10, step=0.2)
            assert b.portal.call(b_view) == pytest.approx(total, rel=0.01)
            assert weight(b) > first_b
    finally:
        redis.stop()
