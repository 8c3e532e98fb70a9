"""Circuit breakers in process: per-mode breakers, side-effect-free routing, the gateway's own probes."""
from __future__ import annotations

import asyncio
import copy
import time

import httpx
import orjson
import pytest

from router_gateway.container import Gateway, GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.domain.protocol import parse_chat_request
from router_gateway.http.memory import InMemoryConnector
from router_gateway.pipeline import CallContext, ChatService
from router_gateway.routing.router_set import build_router_set
from router_gateway.routing.service import RoutingService
from router_gateway.state.expert_state import BreakerSettings, ExpertState
from tests.support.calls import MSG
from tests.support.configs import config_text, fake_experts
from tests.support.fakes import HashEmbedder, fake_connect
from tests.support.polling import wait_until

PROFILES = "routers: {s: {type: strongest}}\nprofiles: {auto: {router: s, cost_weight: 0}}\n"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ranking_and_route_leave_a_half_open_breaker_as_it_was(tmp_path):
    """/v1/route and every ranking ask the breaker; asking must not reserve or use up anything."""
    experts = fake_experts({"okbest": {"q": 0.9}, "okrecovered": {"q": 0.5}})
    config = parse_config(config_text(experts, extra=PROFILES, log_path=tmp_path / "log.db", flush_interval_ms=20))
    clock = Clock()
    state = ExpertState(BreakerSettings(failure_threshold=2, cooldown_s=10), clock=clock)
    for _ in range(2):
        state.record_failure("okrecovered", "http_500")
    clock.now += 11  # cooled down: half-open
    routing = RoutingService(config, build_router_set(config, None), None, state)
    before = copy.deepcopy(state._breakers)
    decisions = [asyncio.run(routing.decide(parse_chat_request({"model": "auto", "messages": MSG}), 100,
                                            f"req-{i}")).as_dict() for i in range(3)]
    assert state._breakers == before
    assert all(d["ineligible"] == decisions[0]["ineligible"] for d in decisions)
    assert decisions[0]["ineligible"]["okrecovered"].startswith("circuit half-open")


def test_stream_failures_between_plain_successes_open_the_stream_breaker():
    state = ExpertState(BreakerSettings(failure_threshold=3, cooldown_s=10), clock=Clock())
    expert = parse_config("experts: {e: {base_url: http://x/v1, model: m, price: {input_per_mtok: 1, "
                          "output_per_mtok: 1}}}").experts["e"]
    for _ in range(3):
        state.record_success("e")  # plain calls succeed ...
        state.record_failure("e", "mid_stream", stream=True)  # ... every stream breaks
    assert state.circuit("e", stream=True) == "open" and state.circuit("e") == "closed"
    assert state.unavailable_reason("e", expert, stream=True).startswith("stream circuit open after 3")
    assert state.unavailable_reason("e", expert) is None  # its plain path still serves
    state.record_failure("e", "http_500")
    state.record_failure("e", "http_500")
    state.record_failure("e", "http_500")
    assert state.unavailable_reason("e", expert, stream=True).startswith("circuit open")  # plain bars both


def test_an_unreachable_expert_fails_in_both_modes():
    state = ExpertState(BreakerSettings(failure_threshold=2, cooldown_s=10), clock=Clock())
    state.record_failure("e", "connect_error")
    state.record_failure("e", "connect_error", stream=True)
    assert state.circuit("e") == "open" and state.circuit("e", stream=True) == "open"


def test_stream_breaker_is_shared_under_its_own_key():
    a = ExpertState(BreakerSettings(failure_threshold=1, cooldown_s=10))
    b = ExpertState(BreakerSettings(failure_threshold=1, cooldown_s=10))
    a.record_failure("e", "mid_stream", stream=True)
    changes = a.take_changes()
    assert list(changes) == ["e#stream"]
    for key, data in changes.items():
        b.apply_remote(key, data)
    assert b.circuit("e", stream=True) == "open" and b.circuit("e") == "closed"


def test_the_gateway_probes_half_open_breakers_itself(tmp_path):
    """No request reaches these experts: the gateway's probes close the recovered breakers (plain and
    stream) and reopen the one whose expert still fails."""
    text = config_text(fake_experts({"okplain": {}, "okstream": {}, "error1": {}}), extra=PROFILES,
                       log_path=tmp_path / "log.db", flush_interval_ms=20)
    text += "server: {breaker: {failure_threshold: 1, cooldown_s: 0.2}}\n"
    calls: list[dict] = []

    async def go():
        gateway = Gateway(GatewayOptions(config=parse_config(text), connect=fake_connect(calls),
                                         embedder=HashEmbedder(), health_interval_s=0))
        await gateway.start()
        try:
            state = gateway.state
            state.record_failure("okplain", "http_500")
            state.record_failure("okstream", "mid_stream", stream=True)
            state.record_failure("error1", "http_500")
            await wait_until(lambda: state.circuit("okplain") == "closed" and state.circuit("okstream", stream=True)
                             == "closed" and any(c["model"] == "error1" for c in calls), timeout=5)
            return state.circuit("okplain"), state.circuit("okstream", stream=True), state.circuit("error1")
        finally:
            await gateway.close()

    plain, stream, failing = asyncio.run(go())
    assert (plain, stream) == ("closed", "closed")
    assert failing in ("open", "half_open")  # probed, failed, open again (half-open once more after 0.2 s)
    probes = {(c["model"], bool(c.get("stream"))) for c in calls}
    assert {("okplain", False), ("okstream", True), ("error1", False)} <= probes
    assert all(c["max_tokens"] == 1 for c in calls)


def test_a_probe_that_cannot_run_reopens_the_breaker_for_a_cooldown(tmp_path):
    """Not a retry every tick (and a log line each time): one failure, then a full cooldown."""
    text = config_text(fake_experts({"okplain": {}}), extra=PROFILES,
                       log_path=tmp_path / "log.db", flush_interval_ms=20)
    text += "server: {breaker: {failure_threshold: 1, cooldown_s: 1.0}}\n"
    crashes: list[float] = []

    async def go():
        gateway = Gateway(GatewayOptions(config=parse_config(text), connect=fake_connect(),
                                         embedder=HashEmbedder(), health_interval_s=0))
        await gateway.start()

        async def broken_forward(*args, **kwargs):
            crashes.append(time.monotonic())
            raise RuntimeError("provider library missing")

        gateway.runtime.forwarder.forward = broken_forward
        try:
            gateway.state.record_failure("okplain", "http_500")
            await wait_until(lambda: crashes, timeout=5)
            # the probe task records its failure: half_open while it runs, open again once it has
            await wait_until(lambda: gateway.state.circuit("okplain") == "open", timeout=5)
            return gateway.state.circuit("okplain")
        finally:
            await gateway.close()

    assert asyncio.run(go()) == "open" and len(crashes) == 1


def _error_event_connect(code: int) -> InMemoryConnector:
    """Streams one chunk, then vLLM's in-band error event with ``code``, then [DONE]."""
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"data": []})
        chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m",
                 "choices": [{"index": 0, "delta": {"content": "a"}}]}
        error = {"error": {"object": "error", "message": "engine failed", "type": "InternalServerError",
                           "param": None, "code": code}}
        data = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in (chunk, error)) + b"data: [DONE]\n\n"
        return httpx.Response(200, stream=httpx.ByteStream(data), headers={"content-type": "text/event-stream"})
    return InMemoryConnector(handler)


@pytest.mark.parametrize("code, opens", [(500, True), (400, False)])
def test_an_error_event_inside_a_completed_stream_counts_against_the_expert(tmp_path, code, opens):
    """The stream ends with [DONE], but the expert failed mid-way: a 5xx event counts on its stream
    breaker; a 4xx event is the request's fault and does not (or clients could trip breakers)."""
    text = config_text(fake_experts({"okx": {}}), extra=PROFILES, log_path=tmp_path / "log.db", flush_interval_ms=20)
    text += "server: {breaker: {failure_threshold: 2, cooldown_s: 60}}\n"

    async def go():
        gateway = Gateway(GatewayOptions(config=parse_config(text), connect=_error_event_connect(code),
                                         embedder=HashEmbedder(), health_interval_s=0))
        await gateway.start()
        try:
            body = {"model": "okx", "messages": MSG, "stream": True}
            for i in range(2):
                outcome = await ChatService(gateway).handle(parse_chat_request(body),
                                                            CallContext(f"req-{i}", body, 100))
                assert b"engine failed" in b"".join([e async for e in outcome.stream])  # relayed as sent
            return gateway.state.circuit("okx", stream=True), gateway.state.circuit("okx")
        finally:
            await gateway.close()

    assert asyncio.run(go()) == (("open" if opens else "closed"), "closed")
