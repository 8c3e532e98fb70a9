"""Fixtures for the reliability suite: fake experts by behaviour, gateways, a real redis-server."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port, start_fake_expert, start_redis


def write_gateway_config(path: Path, experts: dict[str, dict], profiles: dict[str, str], server: str = "",
                         log_path: Path | None = None) -> Path:
    """experts: name -> {url, prior, first_byte, total, max_concurrency}; profiles: name -> YAML flow mapping."""
    lines = ["experts:"]
    for name, spec in experts.items():
        lines += [f"  {name}:", f"    base_url: {spec['url']}/v1", f"    model: {name}-served",
                  f"    price: {{input_per_mtok: {spec.get('price', 0.1)}, output_per_mtok: {2 * spec.get('price', 0.1)}}}",
                  f"    prior_quality: {spec.get('prior', 0.5)}", "    capabilities: [tools, json, vision]",
                  f"    context_window: {spec.get('context_window', 32768)}",
                  f"    max_concurrency: {spec.get('max_concurrency', 64)}",
                  f"    timeout: {{connect: 1, first_byte: {spec.get('first_byte', 1.0)}, total: {spec.get('total', 30)}}}"]
    lines += ["routers:", "  strong: {type: strongest}", "  cheap: {type: cheapest}", "profiles:"]
    lines += [f"  {name}: {spec}" for name, spec in profiles.items()]
    lines += [f"logging: {{path: {log_path or path.parent / 'requests.db'}, flush_interval_ms: 50}}",
              "embedder: {backend: auto, threads: 1}", server]
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for(predicate, timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def set_behaviour(server, behaviour: str, **extra) -> None:
    httpx.post(f"{server.url}/_behaviour", json={"behaviour": behaviour, **extra}).raise_for_status()


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server for the session; tests may stop and restart it on the same port."""
    server = start_redis()
    server.url_redis = f"redis://127.0.0.1:{server.port}/0"
    yield server
    server.stop()


@pytest.fixture(scope="session")
def experts():
    """Fake experts by behaviour; 'refuse' is a port where nothing listens."""
    spec = [("good", "ok", 0.5), ("good2", "ok", 0.5), ("e500", "error", 0.5), ("hang", "hang", 0.5),
            ("slowfb", "slow", 2.0), ("slowok", "slow", 0.3), ("dies", "die_midstream", 0.5),
            ("flap", "flaky", 0.5), ("switch", "ok", 0.5), ("ratelimited", "ratelimit", 0.5)]
    servers = {name: start_fake_expert(behaviour, name, delay) for name, behaviour, delay in spec}
    refuse = type("Nothing", (), {"url": f"http://127.0.0.1:{free_port()}", "stop": lambda self, sig=None: None})()
    servers["refuse"] = refuse
    yield servers
    for server in servers.values():
        server.stop(signal.SIGKILL)  # 'hang' holds requests open: a graceful stop would wait them out
