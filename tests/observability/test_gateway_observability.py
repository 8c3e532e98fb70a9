"""Metrics, traces, request log lines and the live view's data from a real gateway after routed traffic."""
from __future__ import annotations

import importlib.util
import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.configs import ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, ranked_experts, write_config
from tests.support.polling import wait_for
from tests.support.servers import start_gateway

MSG = [{"role": "user", "content": "Explain the difference between a list and a tuple in Python."}]
METRIC_NAMES = {
    "router_gateway_requests_total", "router_gateway_routing_decisions_total", "router_gateway_attempts_total",
    "router_gateway_retries_total", "router_gateway_fallbacks_total", "router_gateway_request_latency_seconds",
    "router_gateway_ttft_seconds", "router_gateway_decision_seconds", "router_gateway_tokens_total",
    "router_gateway_cost_usd_total", "router_gateway_embed_batch_size", "router_gateway_expert_inflight",
    "router_gateway_circuit_state", "router_gateway_expert_healthy", "router_gateway_config_version"}


def scrape(url: str) -> dict[tuple, float]:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: dict, name: str, **match) -> float:
    return sum(v for (n, labels), v in samples.items() if n == name
               and all(dict(labels).get(k) == want for k, want in match.items()))


def test_metrics_counters_move_with_traffic(obs_gateway, traffic):
    samples = scrape(obs_gateway.url)
    names = {n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum").removesuffix("_created")
             for n, _ in samples}
    assert METRIC_NAMES <= names, METRIC_NAMES - names
    assert total(samples, "router_gateway_requests_total", profile="auto", expert="large", status="200") == 12
    assert total(samples, "router_gateway_requests_total", profile="auto-cheap", expert="small") == 10
    assert total(samples, "router_gateway_requests_total", profile="mid", expert="medium") == 6
    assert total(samples, "router_gateway_requests_total", profile="only-broken") == 1
    assert total(samples, "router_gateway_routing_decisions_total", router="strong", expert="large") == 12
    assert total(samples, "router_gateway_routing_decisions_total", router="cheap", expert="small") == 10
    # broken answered 500 three times (first choice each time), then its circuit opened
    assert total(samples, "router_gateway_attempts_total", expert="broken", outcome="http_500") >= 3
    assert total(samples, "router_gateway_fallbacks_total", from_expert="broken", to_expert="small") == 3
    assert total(samples, "router_gateway_retries_total", profile="broken-then-small") == 3
    assert total(samples, "router_gateway_circuit_state", expert="broken", state="open") == 1
    assert total(samples, "router_gateway_circuit_state", expert="large", state="closed") == 1
    assert total(samples, "router_gateway_expert_inflight", expert="large") == 0
    assert total(samples, "router_gateway_request_latency_seconds_count", profile="auto") == 12
    # time to first token is measured on streams: 2 of the 6 'mid' requests (medium delays its first byte)
    assert total(samples, "router_gateway_ttft_seconds_count", expert="medium") == 2
    assert total(samples, "router_gateway_ttft_seconds_sum", expert="medium") >= 2 * 0.15
    assert total(samples, "router_gateway_tokens_total", expert="large", key="none", kind="prompt") > 0
    assert total(samples, "router_gateway_cost_usd_total", expert="large", key="none") > 0
    # baseline routers do not embed, so no batches here (the unit tests feed on_embed_batch)
    assert ("router_gateway_embed_batch_size_count", ()) in samples


def test_request_log_lines_carry_request_ids(obs_gateway, traffic):
    def request_lines() -> list[dict]:
        lines = [json.loads(line) for line in obs_gateway.log_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("logger") == "router_gateway.requests"]
    wait_for(lambda: len(request_lines()) >= sum(traffic.values()), timeout=5, step=0.2)
    requests = request_lines()
    assert len(requests) == sum(traffic.values())
    assert all(line["request_id"].startswith("req-") for line in requests)
    failed = [line for line in requests if line["status"] >= 500]
    assert len(failed) == 1 and failed[0]["level"] == "warning" and failed[0]["model"] == "only-broken"


def test_traces_are_exported_over_otlp(obs_gateway, traffic, collector):
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        assert "tracing is unavailable" in obs_gateway.log_text()
        pytest.skip("opentelemetry-sdk is not installed (the 'otel' extra): checked the log line instead")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    def exported_spans() -> list:
        spans = []
        for body in list(collector.bodies):
            request = ExportTraceServiceRequest.FromString(body)
            for rs in request.resource_spans:
                service = {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"]
                assert service == "gateway-under-test"
                spans += [s for ss in rs.scope_spans for s in ss.spans]
        return spans
    wait_for(lambda: sum(s.name == "chat" for s in exported_spans()) >= sum(traffic.values()), timeout=10, step=0.2)
    spans = exported_spans()
    names = {s.name for s in spans}
    assert {"chat", "embed", "route", "forward", "attempt"} <= names
    roots = [s for s in spans if s.name == "chat"]
    assert len(roots) == sum(traffic.values())
    fallback = [s for s in roots if any(a.key == "gateway.profile" and a.value.string_value == "broken-then-small"
                                        for a in s.attributes)][0]
    children = [s for s in spans if s.trace_id == fallback.trace_id]
    attempts = [s for s in children if s.name == "attempt"]
    assert [a.value.string_value for s in attempts for a in s.attributes if a.key == "gateway.expert"] == \
        ["broken", "small"]
    assert all(s.start_time_unix_nano >= fallback.start_time_unix_nano for s in children)


def test_ui_data_has_decisions_and_series(obs_gateway, traffic):
    data = httpx.get(f"{obs_gateway.url}/ui/data", timeout=10).json()
    assert data["total_requests"] == sum(traffic.values())
    assert set(data["experts_seen"]) >= {"small", "medium", "large"}
    assert {e["name"] for e in data["experts"]} == {"small", "medium", "large", "broken"}
    assert sum(m["count"] for m in data["minutes"]) == sum(traffic.values())
    assert data["latency_recent"]["p50"] > 0
    assert data["hours"] and data["hours"][-1]["cost_usd"] > 0
    recent = data["recent"]
    assert recent[0]["model"] == "only-broken" and recent[0]["status"] >= 500
    # after the circuit opened, broken is listed as ineligible with the reason
    assert any("circuit open" in r["ineligible"].get("broken", "") for r in recent)
    assert all(c["expert"] and "score" in c and "utility" in c for r in recent for c in r["candidates"])
    assert data["frontier"] == [{"table": "routerbench", "url": "/ui/frontier/routerbench.png"}]
    png = httpx.get(f"{obs_gateway.url}/ui/frontier/routerbench.png", timeout=10)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert httpx.get(f"{obs_gateway.url}/ui/frontier/missing.png", timeout=10).status_code == 404
    assert httpx.get(f"{obs_gateway.url}/ui/frontier/..%2F..%2Fetc.png", timeout=10).status_code == 404


def test_ui_page_and_assets_are_served(obs_gateway):
    page = httpx.get(f"{obs_gateway.url}/ui", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        r = httpx.get(f"{obs_gateway.url}/ui/static/{asset}", timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert "http://" not in r.text.replace("http://www.w3.org/2000/svg", "")  # nothing external
    assert "https://" not in page.text and "http://" not in page.text
    assert httpx.get(f"{obs_gateway.url}/ui/static/secret.py", timeout=10).status_code == 404


@pytest.mark.slow
def test_two_workers_share_one_metrics_view(obs_experts, tmp_path):
    """--workers 2: whichever worker answers the scrape reports every worker's counters."""
    config = write_config(tmp_path / "experts.yaml", ranked_experts({"small": obs_experts["small"].url}),
                          routers=STRONG_AND_CHEAP, embedder=ONE_THREAD_EMBEDDER,
                          profiles={"auto": {"router": "strong", "cost_weight": 0.0}})
    server = start_gateway(config, tmp_path, extra_args=["--workers", "2"])
    try:
        with httpx.Client(timeout=20) as http:  # fresh connections spread over the workers
            pids = set()
            for _ in range(20):
                r = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "auto", "messages": MSG})
                assert r.status_code == 200
            for _ in range(6):
                pids.add(httpx.get(f"{server.url}/ui/data", timeout=10).json()["pid"])
                samples = scrape(server.url)
                assert total(samples, "router_gateway_requests_total", expert="small", status="200") == 20
                assert {dict(l).get("pid") for n, l in samples if n == "router_gateway_expert_inflight"} != {None}
    finally:
        server.stop()
