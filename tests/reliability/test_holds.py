"""Holds (services.holds): every way a request ends gives its hold back, and a hold left behind by a
replica that died lapses. In process (fake expert behind the in-memory connection) and on a real Redis."""
from __future__ import annotations

import asyncio
import time

import pytest
from fastapi.testclient import TestClient

from router_gateway.app import create_app
from router_gateway.container import GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.domain.errors import RateLimited
from router_gateway.domain.protocol import parse_chat_request
from router_gateway.pipeline import CallContext
from router_gateway.state.holds import Hold
from router_gateway.state.keys import ApiKey, KeyStore
from router_gateway.state.limits import LocalLimiter
from tests.support.fakes import HashEmbedder, fake_connect
from tests.support.polling import wait_until

MSG = [{"role": "user", "content": "hello there"}]
CONFIG = """
experts:
  fine: {base_url: http://fake/v1, model: ok-fine, price: {input_per_mtok: 1, output_per_mtok: 1}}
  boom: {base_url: http://fake/v1, model: error-boom, price: {input_per_mtok: 1, output_per_mtok: 1}}
  slow: {base_url: http://fake/v1, model: slow-slow, price: {input_per_mtok: 1, output_per_mtok: 1}}
routers: {s: {type: strongest}}
profiles: {auto: {router: s, experts: [fine]}}
logging: {path: LOG, flush_interval_ms: 20}
"""


@pytest.fixture
def one_at_a_time(tmp_path):
    """A client and a key whose budget is little more than one request's hold (~2.7e-4 USD: ~17 prompt
    tokens + 256 completion tokens at 1 USD/Mtok), so a hold that is never given back shows by the
    third request."""
    store = KeyStore(tmp_path / "keys.json")
    secret, record = store.create("one", budget_usd_day=3e-4)
    app = create_app(GatewayOptions(config=parse_config(CONFIG.replace("LOG", str(tmp_path / "log.db"))),
                                    connect=fake_connect(), embedder=HashEmbedder(), health_interval_s=0,
                                    watch_config=False, keys_path=store.path))
    with TestClient(app) as client:
        yield client, secret, record


def post(client, secret, model, **body):
    return client.post("/v1/chat/completions", json={"model": model, "messages": MSG, **body},
                       headers={"authorization": f"Bearer {secret}"})


def test_a_second_request_waits_for_the_first_hold(one_at_a_time):
    client, secret, record = one_at_a_time
    limiter = client.app.state.gateway.limiter
    held = limiter.check(record, Hold(record.id, usd=3e-4))  # a request in flight
    refused = post(client, secret, "fine")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_in_flight"
    assert refused.headers["retry-after"] == "1"
    limiter.release(record.id, held)
    assert post(client, secret, "fine").status_code == 200


def test_holds_are_given_back_on_error_and_at_the_end_of_a_stream(one_at_a_time):
    client, secret, record = one_at_a_time
    limiter = client.app.state.gateway.limiter
    for _ in range(3):  # were the failed requests' holds kept, the second would be refused
        assert post(client, secret, "boom").status_code == 502
    assert not limiter._holds[record.id]
    for _ in range(2):
        streamed = post(client, secret, "fine", stream=True)
        assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
    assert not limiter._holds[record.id]


def test_a_cancelled_request_gives_its_hold_back(one_at_a_time):
    client, secret, record = one_at_a_time
    gateway, service = client.app.state.gateway, client.app.state.chat

    async def cancel_mid_request() -> int:
        body = {"model": "slow", "messages": MSG}
        ctx = CallContext("req-cancel", body, 100, key_id=record.id, api_key=record)
        task = asyncio.create_task(service.handle(parse_chat_request(body), ctx))
        # until it holds its estimate (the slow expert answers after 5 s)
        await wait_until(lambda: gateway.limiter._holds[record.id], timeout=1.0)
        held = len(gateway.limiter._holds[record.id])
        task.cancel()  # what the endpoint does when the client disconnects
        await asyncio.gather(task, return_exceptions=True)
        return held
    assert client.portal.call(cancel_mid_request) == 1
    assert not gateway.limiter._holds[record.id]
    assert post(client, secret, "fine").status_code == 200


def test_a_hold_left_behind_lapses():
    now = [1_000_000.0]
    limiter = LocalLimiter(clock=lambda: now[0])
    key = ApiKey(id="key_x", hash="0" * 64, budget_usd_day=1.0)
    limiter.check(key, Hold(key.id, usd=5.0, ttl_s=30))  # its request never settles (a crash)
    with pytest.raises(RateLimited):
        limiter.check(key, Hold(key.id, usd=0.1))
    now[0] += 31
    assert limiter.check(key, Hold(key.id, usd=0.1)) is not None


@pytest.mark.redis
async def test_a_hold_in_redis_is_shared_then_lapses_when_its_replica_is_gone(redis_server):
    from router_gateway.state.expert_state import ExpertState
    from router_gateway.state.limits import SharedLimiter
    from router_gateway.state.shared_state import SharedState
    states = [SharedState(redis_server.url_redis, ExpertState(), prefix="rg-test-holds:") for _ in range(2)]
    for state in states:
        await state.start()
    one, two = (SharedLimiter(s, LocalLimiter()) for s in states)
    key = ApiKey(id="key_lapse", hash="0" * 64, budget_usd_day=1.0)
    try:
        hold = await one.admit(key, Hold(key.id, usd=2.0, ttl_s=1.0))  # replica one dies holding this
        assert hold.shared
        with pytest.raises(RateLimited) as refused:
            await two.admit(key, Hold(key.id, usd=0.1))
        assert refused.value.code == "budget_in_flight"  # the other replica sees the hold
        await asyncio.sleep(1.1)
        settled = await two.admit(key, Hold(key.id, usd=0.1))
        await two.settle(key, settled, 10, 0.25)
        assert (await states[1].client().hgetall(f"rg-test-holds:held:{key.id}")) == {}
        assert float(await states[1].client().get(two._keys(key.id, time.time())[2])) == 0.25
    finally:
        for state in states:
            await state.close()
