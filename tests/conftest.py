"""Shared fixtures: fake expert processes and a gateway process on free loopback ports."""
from __future__ import annotations

import textwrap

import pytest

from tests.support.configs import ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, ranked_experts, write_config
from tests.support.servers import start_fake_expert, start_gateway


@pytest.fixture(scope="session")
def fake_experts():
    """Real HTTP fake experts, one per behaviour."""
    servers = {name: start_fake_expert(behaviour, name) for name, behaviour in
               [("good", "ok"), ("good2", "ok"), ("broken", "error"), ("hanging", "hang")]}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="session")
def gateway(fake_experts, tmp_path_factory):
    """A gateway process in front of good + good2 (and broken/hanging for error tests)."""
    tmp = tmp_path_factory.mktemp("gateway")
    config = write_config(tmp / "experts.yaml", ranked_experts({n: s.url for n, s in fake_experts.items()}),
                          routers=STRONG_AND_CHEAP, embedder=ONE_THREAD_EMBEDDER, profiles=textwrap.dedent("""\
          auto: {router: strong, cost_weight: 0.0, experts: [good, good2]}
          auto-cheap: {router: cheap, cost_weight: 1.0, experts: [good, good2], max_messages: 4, max_tokens: 100}
          only-broken: {router: strong, experts: [broken]}
          only-hanging: {router: strong, experts: [hanging]}
          broken-then-good: {router: cheap, cost_weight: 1.0, experts: [broken, good2]}"""),
                          extra="server: {max_body_bytes: 65536, max_attempts: 3}")
    server = start_gateway(config, tmp)
    server.config_path = config
    server.db_path = tmp / "requests.db"
    yield server
    server.stop()
