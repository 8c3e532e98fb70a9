"""Access to the ops endpoints, the frontier lookup, and tracing being off (and free) by default."""
from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from router_gateway.api.ops import frontier_tables
from router_gateway.app import create_app
from router_gateway.container import GatewayOptions
from router_gateway.domain.record import Attempt, RequestRecord
from router_gateway.state.keys import KeyStore
from tests.support.configs import AUTO_PROFILES, ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, ranked_experts, write_config


@pytest.fixture
def keyed_app(tmp_path, monkeypatch):
    monkeypatch.delenv("ROUTER_GATEWAY_PUBLIC_METRICS", raising=False)
    config = write_config(tmp_path / "experts.yaml", ranked_experts({"a": "http://127.0.0.1:9"}),
                          routers=STRONG_AND_CHEAP, profiles=AUTO_PROFILES, embedder=ONE_THREAD_EMBEDDER)
    keys = KeyStore(tmp_path / "keys.json")
    admin, _ = keys.create("ops", scopes=("admin",))
    user, _ = keys.create("app")
    app = create_app(GatewayOptions(config_path=config, watch_config=False, health_interval_s=0,
                                    keys_path=tmp_path / "keys.json"))
    return app, admin, user


def test_ops_endpoints_need_an_admin_key_when_keys_exist(keyed_app, monkeypatch):
    app, admin, user = keyed_app
    with TestClient(app) as client:
        for path in ("/metrics", "/ui/data"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"authorization": f"Bearer {user}"}).status_code == 403
            assert client.get(path, headers={"authorization": f"Bearer {admin}"}).status_code == 200
        assert client.get("/ui").status_code == 200  # the page holds no data
        monkeypatch.setenv("ROUTER_GATEWAY_PUBLIC_METRICS", "1")
        assert client.get("/metrics").status_code == 200
        assert client.get("/ui/data").status_code == 401


def test_frontier_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTER_GATEWAY_EVAL_REPORTS", str(tmp_path / "absent"))
    assert frontier_tables() == []
    for name in ("routerbench", "mmlu-pro", ".hidden"):
        (tmp_path / "r" / name).mkdir(parents=True)
        (tmp_path / "r" / name / "frontier.png").write_bytes(b"\x89PNG")
    (tmp_path / "r" / "no-plot").mkdir()
    monkeypatch.setenv("ROUTER_GATEWAY_EVAL_REPORTS", str(tmp_path / "r"))
    assert frontier_tables() == ["mmlu-pro", "routerbench"]


def test_tracing_off_imports_no_opentelemetry():
    code = ("import sys\nfrom router_gateway.observability import Observability\n"
            "o = Observability()\nassert o.tracer is None\n"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_tracing_spans_from_a_record():
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    from router_gateway.observability.tracing import make_tracer
    exporter = InMemorySpanExporter()
    tracer = make_tracer(exporter)
    tracer.on_record(RequestRecord("req-1", 1000.0, profile="auto", router="r", status=200, chosen_expert="b",
                                   latency_ms=50.0, embed_ms=2.0, route_ms=1.0,
                                   attempts=[Attempt("a", "timeout", 20.0), Attempt("b", "ok", 25.0)]))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"chat", "embed", "route", "forward", "attempt"}
    root = spans["chat"]
    assert root.start_time == 1000 * 10**9 and root.end_time == root.start_time + 50 * 10**6
    assert spans["route"].start_time == spans["embed"].end_time
    attempts = [s for s in exporter.get_finished_spans() if s.name == "attempt"]
    assert [s.attributes["gateway.outcome"] for s in attempts] == ["timeout", "ok"]
    assert attempts[1].start_time == attempts[0].end_time
    assert all(s.context.trace_id == root.context.trace_id for s in exporter.get_finished_spans())
    tracer.shutdown()
