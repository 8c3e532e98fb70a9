"""Budget pacing through the gateway (in process: fake transport, hashing embedder)."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from router_gateway.app import create_app
from router_gateway.auth import KeyStore
from router_gateway.config import parse_config
from router_gateway.gateway import GatewayOptions
from tests.support.fakes import HashEmbedder, fake_transport

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
    app = create_app(GatewayOptions(config=config, transport=fake_transport(), embedder=HashEmbedder(),
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
