"""Fixtures for the reliability suite: fake experts by behaviour, gateways, a real redis-server."""
from __future__ import annotations

import signal

import pytest

from tests.support.servers import free_port, start_fake_expert, start_redis


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
