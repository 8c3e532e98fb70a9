"""Forwarding, health checks and engine-metrics scrapes all go through the gateway's one HTTP client, so
the unit tests' in-memory connection serves them all, under the production pool and parser, and their
failures speak the client's errors."""
from __future__ import annotations

import asyncio
import time

import httpx

from router_gateway.capacity.load import CapacityBook
from router_gateway.capacity.poller import EnginePoller
from router_gateway.container import Gateway, GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.forwarding.forwarder import Forwarder
from router_gateway.http.get import GetClient
from router_gateway.http.memory import InMemoryConnector
from router_gateway.state.expert_state import ExpertState
from tests.support.configs import config_text, expert
from tests.support.fakes import HashEmbedder, fake_handler

METRICS_PAGE = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 4.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 6.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
"""


def expert_server(seen: list[httpx.Request]):
    """well.test answers, sick.test fails with 503, gone.test refuses the connection, slow.test never
    answers; /metrics is vLLM's page on well.test only."""
    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        host = request.url.host
        if host == "gone.test":
            raise httpx.ConnectError("connection refused")
        if host == "slow.test":
            await asyncio.sleep(30)
        if host == "sick.test":
            return httpx.Response(503, text="overloaded")
        if request.url.path == "/metrics":
            return httpx.Response(200, text=METRICS_PAGE)
        return httpx.Response(200, json={"data": []})
    return handler


def experts_config(tmp_path, well_model: str = "well") -> str:
    """Four experts named by how their server behaves (expert_server), each with an API key and /metrics."""
    experts = {name: expert(f"http://{name}.test/v1", well_model if name == "well" else name, 1, 1,
                            api_key=f"sk-{name}", metrics_url=f"http://{name}.test/metrics")
               for name in ("well", "sick", "gone", "slow")}
    return config_text(experts, log_path=tmp_path / "log.db", flush_interval_ms=20)


def test_health_checks_run_on_the_injected_connection(tmp_path):
    seen: list[httpx.Request] = []

    async def go():
        gateway = Gateway(GatewayOptions(config=parse_config(experts_config(tmp_path)), embedder=HashEmbedder(),
                                         connect=InMemoryConnector(expert_server(seen)), health_interval_s=0))
        await gateway.start()
        try:
            experts = gateway.runtime.config.experts
            gateway.http.timeout_s = 0.3  # slow.test: no headers in time
            await asyncio.gather(*(gateway.health.check(name, e) for name, e in experts.items()))
            return {name: gateway.state.health(name) for name in experts}, gateway.ready()[1]
        finally:
            await gateway.close()

    health, checks = asyncio.run(go())
    assert health["well"] is None and health["sick"] == "HTTP 503"
    assert "connection refused" in health["gone"] and "no response within 0.3 s" in health["slow"]
    assert checks["experts_reachable"] == ["well"]
    check = next(r for r in seen if r.url.host == "well.test")
    assert (check.method, check.url.path, check.headers["authorization"]) == ("GET", "/v1/models", "Bearer sk-well")


def test_engine_metrics_are_scraped_through_the_same_client(tmp_path):
    seen: list[httpx.Request] = []
    experts = parse_config(experts_config(tmp_path)).experts

    async def go():
        book = CapacityBook()
        client = GetClient(InMemoryConnector(expert_server(seen)), timeout_s=0.3)
        try:
            await EnginePoller(book, http=client).poll_once(experts, interval=1.0)
        finally:
            await client.aclose()
        return book

    book = asyncio.run(go())
    assert book.known() == {"well"}  # 503, refused and silent engines leave no estimate
    assert (book.get("well").waiting, book.get("well").running) == (6.0, 4.0)
    assert {r.url.path for r in seen} == {"/metrics"}


def test_the_forwarder_pools_its_connections_on_the_injected_connection(tmp_path):
    """Plain and streamed answers on one keep-alive connection: the production pool runs in unit tests."""
    calls: list[dict] = []
    connector = InMemoryConnector(fake_handler(calls))
    config = parse_config(experts_config(tmp_path, well_model="ok-well"))
    message = {"messages": [{"role": "user", "content": "hi"}]}

    async def go():
        forwarder = Forwarder(config, ExpertState(), connector)
        try:
            plain = [await forwarder.forward(["well"], dict(message), False, time.monotonic() + 5) for _ in range(3)]
            streamed = await forwarder.forward(["well"], {**message, "stream": True}, True, time.monotonic() + 5)
            events = b"".join([e async for e in streamed.stream])
            return plain, events
        finally:
            await forwarder.aclose()

    plain, events = asyncio.run(go())
    assert all(b'"content":"hi"' in r.body and b'"model":"well"' in r.body for r in plain)
    # two deltas and [DONE] (the usage-only event was not asked for), renamed to the expert's name
    assert events.count(b"data: ") == 3 and events.count(b'"model":"well"') == 2
    assert events.endswith(b"data: [DONE]\n\n")
    assert len(calls) == 4 and connector.connections == 1
