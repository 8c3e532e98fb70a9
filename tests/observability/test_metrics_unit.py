"""The observer fed with request records: Prometheus names and values, live-view aggregates, log lines."""
from __future__ import annotations

import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from router_gateway.domain.record import RequestRecord
from router_gateway.observability import Observability
from router_gateway.observability.live import LiveView, percentiles
from router_gateway.observability.logging_setup import JsonFormatter
from router_gateway.state.expert_state import ExpertState

NOW = 1_700_000_000.0


def record(**over) -> RequestRecord:
    """A record as the pipeline writes it, from its stored row's fields (``over`` replaces some)."""
    base = {"request_id": "req-1", "ts": NOW, "model": "auto", "profile": "auto", "router": "strong",
            "candidates": [{"expert": "a", "score": 0.9, "cost_usd": 1e-5, "utility": 0.9},
                           {"expert": "b", "score": 0.5, "cost_usd": 1e-6, "utility": 0.5}],
            "ineligible": {"c": "context window too small"}, "chosen_expert": "a", "explored": False,
            "status": 200, "error": None, "stream": False, "attempts": [{"expert": "a", "outcome": "ok", "ms": 12.0}],
            "ttft_ms": 10.0, "latency_ms": 15.0, "embed_ms": 1.0, "route_ms": 0.2, "prompt_tokens": 10,
            "completion_tokens": 8, "cost_usd": 0.002, "key_id": "k1", "config_version": 1}
    base.update(over)
    return RequestRecord.from_row(base)


class FakeGateway:
    def __init__(self):
        self.state = ExpertState()
        self.runtime = None
        self.observers = []


def samples(text: bytes) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text, name, **labels):
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def obs(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    gateway = FakeGateway()
    o = Observability(gateway)
    gateway.observers.append(o)
    return o, gateway


def test_counters_and_histograms_from_records(obs):
    o, _ = obs
    o.on_record(record())
    o.on_record(record(request_id="req-2", chosen_expert="b", key_id=None,
                       attempts=[{"expert": "a", "outcome": "http_500", "ms": 3.0},
                                 {"expert": "b", "outcome": "ok", "ms": 5.0}]))
    o.on_record(record(request_id="req-3", chosen_expert=None, status=503, cost_usd=None, prompt_tokens=None,
                       completion_tokens=None, ttft_ms=None, error="no expert",
                       attempts=[{"expert": "a", "outcome": "timeout", "ms": 3000.0}]))
    text = o.metrics.render()
    assert value(text, "router_gateway_requests_total", profile="auto", expert="a", status="200") == 1
    assert value(text, "router_gateway_requests_total", profile="auto", expert="b", status="200") == 1
    assert value(text, "router_gateway_requests_total", profile="auto", expert="none", status="503") == 1
    assert value(text, "router_gateway_routing_decisions_total", router="strong", expert="a", explored="false") == 3
    assert value(text, "router_gateway_attempts_total", expert="a", outcome="http_500") == 1
    assert value(text, "router_gateway_attempts_total", expert="a", outcome="timeout") == 1
    assert value(text, "router_gateway_retries_total", profile="auto") == 1
    assert value(text, "router_gateway_fallbacks_total", from_expert="a", to_expert="b") == 1
    assert value(text, "router_gateway_fallbacks_total", from_expert="a", to_expert="none") == 1
    assert value(text, "router_gateway_tokens_total", expert="a", key="k1", kind="prompt") == 10
    assert value(text, "router_gateway_tokens_total", expert="b", key="none", kind="completion") == 8
    assert value(text, "router_gateway_cost_usd_total", expert="a", key="k1") == pytest.approx(0.002)
    assert value(text, "router_gateway_request_latency_seconds_count", profile="auto", expert="a") == 1
    assert value(text, "router_gateway_request_latency_seconds_bucket", profile="auto", expert="a", le="0.025") == 1
    assert value(text, "router_gateway_ttft_seconds_count", expert="a") == 1
    assert value(text, "router_gateway_decision_seconds_count", stage="embed") == 3


@pytest.mark.parametrize("kind, sizes, le, below", [
    ("embed", (1, 3, 3, 40), "4.0", 3),   # prompts per embedder batch
    ("score", (1, 20), "16.0", 1),        # prompts per router scoring call (routing/score_batcher.py)
])
def test_batch_histograms(obs, kind, sizes, le, below):
    o, _ = obs
    for size in sizes:
        getattr(o, f"on_{kind}_batch")(size)
    text = o.metrics.render()
    assert value(text, f"router_gateway_{kind}_batch_size_count") == len(sizes)
    assert value(text, f"router_gateway_{kind}_batch_size_sum") == sum(sizes)
    assert value(text, f"router_gateway_{kind}_batch_size_bucket", le=le) == below
    assert o.live.data()[kind] == {"batches": len(sizes), "prompts": sum(sizes)}


def test_state_gauges_read_at_scrape_time(obs):
    o, gateway = obs
    state = gateway.state
    state.acquire("a")
    state.acquire("a")
    for _ in range(state.settings.failure_threshold):
        state.record_failure("b", "connect_error")
    state.set_health("c", "ConnectError")
    text = o.metrics.render()
    assert value(text, "router_gateway_expert_inflight", expert="a") == 2
    assert value(text, "router_gateway_circuit_state", expert="b", state="open") == 1
    assert value(text, "router_gateway_circuit_state", expert="b", state="closed") == 0
    assert value(text, "router_gateway_circuit_state", expert="a", state="closed") == 1
    assert value(text, "router_gateway_expert_healthy", expert="c") == 0
    state.release("a")
    assert value(o.metrics.render(), "router_gateway_expert_inflight", expert="a") == 1


def test_multiprocess_mode_sums_workers(tmp_path):
    """Two 'workers' (separate registries writing to one PROMETHEUS_MULTIPROC_DIR) add up at scrape."""
    import subprocess
    import sys
    code = (
        "from router_gateway.domain.record import RequestRecord\n"
        "from router_gateway.observability.metrics import GatewayMetrics\n"
        "m = GatewayMetrics()\n"
        "m.on_record(RequestRecord('req-1', 1.0, profile='auto', chosen_expert='a', status=200, latency_ms=5.0,\n"
        "                          candidates=[{'expert': 'a'}], router='r'))\n"
        "import sys; sys.stdout.buffer.write(m.render())\n")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True).stdout
    assert value(out, "router_gateway_requests_total", profile="auto", expert="a", status="200") == 2
    assert value(out, "router_gateway_request_latency_seconds_count", profile="auto", expert="a") == 2


def test_live_view_buckets_and_recent():
    live = LiveView(recent=3, clock=lambda: NOW + 30)
    for i in range(5):
        live.on_record(record(request_id=f"req-{i}", latency_ms=10.0 * (i + 1),
                              chosen_expert="a" if i % 2 else "b"))
    live.on_record(record(request_id="old", ts=NOW - 7200, cost_usd=0.5))
    data = live.data()
    assert [r["request_id"] for r in data["recent"]] == ["old", "req-4", "req-3"]
    assert data["recent"][1]["ineligible"] == {"c": "context window too small"}
    minute = [m for m in data["minutes"] if m["t"] == int(NOW // 60) * 60][0]
    assert minute["by_expert"] == {"a": 2, "b": 3} and minute["count"] == 5
    assert minute["p50"] == 30.0 and minute["p99"] == 50.0
    assert sum(h["cost_usd"] for h in data["hours"]) == pytest.approx(0.5 + 5 * 0.002)
    assert data["experts_seen"] == ["a", "b"]


def test_percentiles_nearest_rank():
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}
    assert percentiles(list(range(1, 101))) == {"p50": 50, "p95": 95, "p99": 99}
    assert percentiles([7.0]) == {"p50": 7.0, "p95": 7.0, "p99": 7.0}


def test_request_log_line_carries_request_id(obs, caplog):
    o, _ = obs
    with caplog.at_level(logging.DEBUG, logger="router_gateway.requests"):
        o.on_record(record(request_id="req-ok"))
        o.on_record(record(request_id="req-bad", status=502, error="upstream error", chosen_expert=None))
    by_id = {r.request_id: r for r in caplog.records}
    assert by_id["req-ok"].levelno == logging.DEBUG and by_id["req-bad"].levelno == logging.WARNING
    line = json.loads(JsonFormatter().format(by_id["req-bad"]))
    assert line["request_id"] == "req-bad" and line["status"] == 502 and line["level"] == "warning"
    assert line["latency_ms"] == 15.0


def test_observer_failure_never_reaches_the_request(obs, caplog):
    o, _ = obs

    class Broken:
        def on_record(self, record):
            raise RuntimeError("boom")

    o._parts.insert(0, Broken())
    o.on_record(record())  # no exception
    assert value(o.metrics.render(), "router_gateway_requests_total", profile="auto", expert="a",
                 status="200") == 1
    assert "boom" in caplog.text
