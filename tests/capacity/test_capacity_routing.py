"""Capacity-aware routing end to end on loopback: two queueing experts with vLLM's metric names, a real
gateway process reading their /metrics, outside load on the better one."""
from __future__ import annotations

import threading

import httpx
import pytest

from eval.bench.procs import Proc, free_port, python_module
from tests.support.configs import ONE_THREAD_EMBEDDER, expert, write_config
from tests.support.polling import wait_for
from tests.support.servers import ROOT, Server, start_gateway


@pytest.fixture(scope="module")
def queue_experts(tmp_path_factory):
    work = tmp_path_factory.mktemp("queue-experts")
    procs, urls = [], {}
    for name in ("strong", "weak"):
        port = free_port()
        proc = Proc(name, python_module("eval.capacity.queue_expert", "--port", str(port), "--slots", "2",
                                        "--service-ms", "400", "--model", name), work, cwd=str(ROOT))
        procs.append(proc)
        proc.wait_ready(f"http://127.0.0.1:{port}/v1/models")
        urls[name] = f"http://127.0.0.1:{port}"
    yield urls
    for proc in procs:
        proc.stop()


def _gateway(tmp_path, urls: dict[str, str], latency_weight: float, metrics: bool) -> tuple[Server, str]:
    experts = {}
    for name, prior in (("strong", 0.8), ("weak", 0.7)):
        experts[name] = expert(urls[name] + "/v1", name, 0.1, 0.1, prior_quality=prior, max_concurrency=16)
        if metrics:
            experts[name]["metrics_url"] = urls[name] + "/metrics"
    path = write_config(tmp_path / "experts.yaml", experts, routers={"best": {"type": "strongest"}},
                        profiles={"auto": {"router": "best", "cost_weight": 0.0, "latency_weight": latency_weight}},
                        flush_interval_ms=None, embedder=ONE_THREAD_EMBEDDER, server={"metrics_poll_s": 0.2})
    server = start_gateway(path, tmp_path)
    return server, server.url


class OutsideLoad:
    """Clients that call the strong expert directly (not through the gateway) until stopped."""

    def __init__(self, url: str, clients: int):
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(url,), daemon=True) for _ in range(clients)]

    def _loop(self, url: str) -> None:
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                client.post(url + "/v1/chat/completions", json={"model": "strong", "messages": []})

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)


def _route(base: str) -> dict:
    r = httpx.post(base + "/v1/route", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
                   timeout=30)
    r.raise_for_status()
    return r.json()


def _wait_for(predicate):
    """The route once ``predicate`` holds for it (the metrics poll is 0.2 s); fails the test after 20 s."""
    value = wait_for(predicate, timeout=20.0, step=0.2)
    assert value, "condition not met in time"
    return value


def test_a_queue_at_the_better_expert_moves_requests_to_the_idle_one(queue_experts, tmp_path):
    gw, base = _gateway(tmp_path, queue_experts, latency_weight=0.5, metrics=True)
    try:
        calm = _route(base)
        assert calm["chosen"] == "strong"
        with OutsideLoad(queue_experts["strong"], clients=8):  # 2 slots busy, ~6 waiting
            busy = _wait_for(lambda: (d := _route(base))["chosen"] == "weak" and d)
        waits = {c["expert"]: c["expected_wait_s"] for c in busy["candidates"]}
        assert waits["strong"] > 0.5 and waits["weak"] == 0.0
        # the wait also reaches a chat answer: the request goes to the idle expert
        r = httpx.post(base + "/v1/chat/completions", json={"model": "auto", "messages": [
            {"role": "user", "content": "hi"}]}, timeout=30)
        assert r.status_code == 200
        recovered = _wait_for(lambda: (d := _route(base))["chosen"] == "strong" and d)
        assert recovered["candidates"][0]["expected_wait_s"] == 0.0
    finally:
        gw.stop()


def test_without_a_latency_weight_the_queue_is_shown_but_not_acted_on(queue_experts, tmp_path):
    gw, base = _gateway(tmp_path, queue_experts, latency_weight=0.0, metrics=True)
    try:
        with OutsideLoad(queue_experts["strong"], clients=8):
            busy = _wait_for(lambda: (d := _route(base))["candidates"][0].get("expected_wait_s", 0) > 0.5 and d)
        assert busy["chosen"] == "strong"
    finally:
        gw.stop()
