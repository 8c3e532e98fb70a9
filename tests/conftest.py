"""Shared fixtures: fake expert processes and a gateway process on free loopback ports."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support.servers import start_fake_expert, start_gateway


def write_config(path: Path, experts: dict[str, str], extra: str = "", log_path: Path | None = None,
                 profiles: str | None = None, expert_extra: dict[str, str] | None = None,
                 first_byte_s: float = 3) -> Path:
    """experts: name -> base url. Prices rise with position so 'cheapest' and 'strongest' differ."""
    lines = ["experts:"]
    for i, (name, url) in enumerate(experts.items()):
        lines += [f"  {name}:", f"    base_url: {url}/v1", f"    model: {name}-served",
                  f"    price: {{input_per_mtok: {0.1 * (i + 1):.2f}, output_per_mtok: {0.2 * (i + 1):.2f}}}",
                  f"    prior_quality: {0.5 + 0.1 * i:.2f}", "    capabilities: [tools, json]",
                  "    context_window: 4096",
                  f"    timeout: {{connect: 1, first_byte: {first_byte_s}, total: {max(10, first_byte_s)}}}"]
        if expert_extra and name in expert_extra:
            lines += ["    " + line for line in expert_extra[name].strip().splitlines()]
    lines += ["routers:", "  strong: {type: strongest}", "  cheap: {type: cheapest}"]
    lines += [profiles or textwrap.dedent("""\
        profiles:
          auto: {router: strong, cost_weight: 0.0}
          auto-cheap: {router: cheap, cost_weight: 1.0, max_messages: 4, max_tokens: 100}""")]
    lines += [f"logging: {{path: {log_path or path.parent / 'requests.db'}, flush_interval_ms: 50}}"]
    lines += ["embedder: {backend: auto, threads: 1}", extra]
    path.write_text("\n".join(lines) + "\n")
    return path


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
    config = write_config(tmp / "experts.yaml", {n: s.url for n, s in fake_experts.items()},
                          profiles=textwrap.dedent("""\
        profiles:
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
