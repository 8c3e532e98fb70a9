"""Routing and forwarding in process: fake expert behind the in-memory connection (behaviour by name), hashing embedder."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from router_gateway.container import Gateway, GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.domain.config_yaml import ConfigError
from router_gateway.domain.errors import BadRequest, UpstreamError
from router_gateway.domain.protocol import parse_chat_request
from router_gateway.embedding.batcher import BatchingEmbedder
from router_gateway.forwarding.forwarder import ClientError
from router_gateway.pipeline import CallContext, ChatService
from router_gateway.routing.router_set import build_router_set
from routers.artifact import save_artifact
from routers.baselines import StrongestRouter
from tests.support.calls import MSG
from tests.support.configs import config_text, expert, fake_experts
from tests.support.fakes import HashEmbedder, fake_connect


@pytest.fixture
def run(tmp_path):
    """Build an in-process gateway for a config text and run a coroutine against it."""
    def _run(config_text: str, body: dict, calls: list | None = None):
        async def go():
            config = parse_config(config_text)
            gateway = Gateway(GatewayOptions(config=config, connect=fake_connect(calls),
                                             embedder=HashEmbedder(), health_interval_s=0))
            await gateway.start()
            try:
                chat = parse_chat_request(body)
                outcome = await ChatService(gateway).handle(chat, CallContext("req-test", body, 100))
                if outcome.stream is not None:
                    outcome.body = b"".join([e async for e in outcome.stream])
                await gateway.request_log.flush()
                return outcome, await gateway.request_log.recent(10)
            finally:
                await gateway.close()
        return asyncio.run(go())
    return _run


#: the one router most tests here route with
STRONGEST = {"s": {"type": "strongest"}}


def test_cost_weight_trades_quality_for_price(run, tmp_path):
    experts = {"okcheap": {"price": 0.1, "q": 0.5}, "okdear": {"price": 10, "q": 0.9}}
    profiles = "routers: {s: {type: strongest}}\nprofiles:\n  q: {router: s, cost_weight: 0}\n  c: {router: s, cost_weight: 1}\n"
    text = config_text(fake_experts(experts), extra=profiles,
                       log_path=tmp_path / "log.db", flush_interval_ms=20)
    assert run(text, {"model": "q", "messages": MSG})[0].headers["x-router-expert"] == "okdear"
    assert run(text, {"model": "c", "messages": MSG})[0].headers["x-router-expert"] == "okcheap"


def test_capability_and_context_window_eligibility(run, tmp_path):
    experts = {"oktools": {"q": 0.1, "caps": ["tools"]}, "okplain": {"q": 0.9, "ctx": 64}}
    text = config_text(fake_experts(experts), routers=STRONGEST,
                       profiles={"auto": "{router: s, cost_weight: 0}"}, log_path=tmp_path / "log.db",
                       flush_interval_ms=20)
    tools = [{"type": "function", "function": {"name": "f"}}]
    outcome, records = run(text, {"model": "auto", "messages": MSG, "tools": tools})
    assert outcome.headers["x-router-expert"] == "oktools"
    assert records[0]["ineligible"]["okplain"].startswith("lacks capability tools")
    with pytest.raises(BadRequest) as info:  # static: no retry can help, so 400 rather than 503
        run(text, {"model": "auto", "messages": [{"role": "user", "content": "x" * 400}], "tools": tools,
                   "max_tokens": 8150})  # ~100 prompt tokens + 8150 > 8192
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages"


def test_fallback_on_connect_error_and_5xx(run, tmp_path):
    experts = {"down1": {"q": 0.9}, "error1": {"q": 0.8}, "okz": {"q": 0.1}}
    text = config_text(fake_experts(experts), routers=STRONGEST,
                       profiles={"auto": "{router: s, cost_weight: 0}"}, log_path=tmp_path / "log.db",
                       flush_interval_ms=20)
    outcome, records = run(text, {"model": "auto", "messages": MSG})
    assert outcome.headers["x-router-expert"] == "okz"
    assert [a["outcome"] for a in records[0]["attempts"]] == ["connect_error", "http_500", "ok"]
    assert records[0]["propensity"] is None  # a fallback answered: not the policy's choice


def test_expert_rejecting_the_request_is_logged_with_its_name(run, tmp_path):
    text = config_text(fake_experts({"rejectx": {}}), routers=STRONGEST,
                       profiles={"auto": "{router: s}"}, log_path=tmp_path / "log.db", flush_interval_ms=20)
    with pytest.raises(ClientError) as info:
        run(text, {"model": "auto", "messages": MSG})
    assert info.value.status == 400
    assert [(a.expert, a.outcome) for a in info.value.attempts] == [("rejectx", "http_400")]


def test_all_fail_is_502_and_logged(run, tmp_path):
    text = config_text(fake_experts({"error1": {}, "error2": {}}), routers=STRONGEST,
                       profiles={"auto": "{router: s}"}, log_path=tmp_path / "log.db", flush_interval_ms=20)
    with pytest.raises(UpstreamError) as info:
        run(text, {"model": "auto", "messages": MSG})
    assert "error1=http_500" in info.value.message


def test_stream_relay_renames_model_and_hides_usage(run, tmp_path):
    text = config_text(fake_experts({"okx": {"model": "okx-served"}}), routers=STRONGEST,
                       profiles={"auto": "{router: s}"}, log_path=tmp_path / "log.db", flush_interval_ms=20)
    calls: list = []
    outcome, records = run(text, {"model": "auto", "messages": MSG, "stream": True}, calls)
    assert calls[0]["stream_options"] == {"include_usage": True}  # asked upstream for usage
    assert b'"model":"okx"' in outcome.body and b"okx-served" not in outcome.body
    assert b'"usage"' not in outcome.body  # the client did not ask for it
    assert outcome.body.endswith(b"data: [DONE]\n\n")
    assert records[0]["completion_tokens"] == 5 and records[0]["cost_usd"] > 0


def test_exploration_is_deterministic_per_request_id(tmp_path):
    from router_gateway.routing.service import _explore
    from routers.policy import unit_hash
    order = [2, 0, 1]
    first = [_explore(order, 0.3, f"req-{i}") for i in range(200)]
    again = [_explore(order, 0.3, f"req-{i}") for i in range(200)]
    assert first == again
    explored = sum(1 for o, p, e in first if e)
    assert 20 < explored < 60  # ~ 0.3 * 2/3 of 200
    for o, p, e in first:
        assert p == pytest.approx(1 - 0.3 + 0.1) if o[0] == 2 else p == pytest.approx(0.1)
    assert 0 <= unit_hash("x") < 1


def test_trained_artifact_loads_and_mismatched_embedder_is_refused(tmp_path):
    router = StrongestRouter().fit(np.zeros((4, 384)), np.array([[0.2, 0.9]] * 4), experts=["a", "b"])
    save_artifact(router, tmp_path / "art", embedder={"name": "all-MiniLM-L6-v2", "dim": 384, "backend": "torch"})
    experts = {name: expert("http://x/v1", name, 1, 1) for name in ("a", "b")}
    config = parse_config(config_text(experts, routers={"t": {"type": "strongest"}},
                                      profiles={"auto": {"router": "t"}}))
    assert build_router_set(config, HashEmbedder().info)
    # the same artifact declared as a trained type: the router type must match the artifact's
    bad = parse_config(config_text(experts, routers={"t": {"type": "knn", "artifact": str(tmp_path / "art")}},
                                   profiles={"auto": {"router": "t"}}))
    with pytest.raises(ConfigError, match="holds a 'strongest' router"):
        build_router_set(bad, HashEmbedder().info)
    from router_gateway.routing.router_set import check_artifact_embedder
    from routers.base import RouterError
    with pytest.raises(RouterError, match="trained with embedder"):
        check_artifact_embedder({"embedder": {"name": "all-MiniLM-L6-v2", "dim": 384}},
                                HashEmbedder(dim=768, name="other").info)


def test_batcher_groups_concurrent_requests_and_caches():
    async def go():
        inner = HashEmbedder()
        batcher = BatchingEmbedder(inner, max_batch=64, max_wait_ms=5)
        await batcher.start()
        vectors = await asyncio.gather(*(batcher.embed_one(f"prompt {i}") for i in range(40)))
        again = await batcher.embed_one("prompt 3")
        await batcher.close()
        return inner.calls, vectors, again
    calls, vectors, again = asyncio.run(go())
    assert sum(calls) == 40 and len(calls) < 40  # batched
    assert np.allclose(again, vectors[3])  # cache hit, no new call
