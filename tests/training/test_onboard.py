"""Onboarding an expert into a cluster artifact through the gateway's forwarder, against a fake OpenAI
server (a handler behind the in-memory connection injected into the forwarder's HTTP client)."""
from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from router_gateway.http.memory import InMemoryConnector
from router_gateway.training.onboarding import (
    Endpoint,
    config_for_endpoint,
    config_from_yaml,
    grade,
    onboard,
)
from routers.artifact import load_artifact, save_artifact
from routers.base import RouterError
from routers.cluster import ClusterRouter
from tests.support.training_data import fake_embed


def fake_openai(calls):
    """Answers math probes correctly ('42'), chat probes wrongly."""
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append((str(request.url), body["model"], request.headers.get("authorization")))
        prompt = body["messages"][-1]["content"]
        answer = "The answer is 42." if "math" in prompt else "I do not know."
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": answer}}]})
    return InMemoryConnector(handler)


def make_artifact(tmp_path):
    prompts = [f"{'math' if i % 2 == 0 else 'chat'} q{i}" for i in range(200)]
    X, info = fake_embed(prompts)
    rng = np.random.default_rng(0)
    Y = np.stack([np.full(200, 0.5), (rng.random(200) < 0.8).astype(float)], axis=1)
    router = ClusterRouter(n_clusters=4).fit(X, Y, experts=["a", "b"])
    return save_artifact(router, tmp_path / "cluster", embedder=info)


def test_grade():
    assert grade("The answer is 42.", "42") == 1.0
    assert grade("4242", "42") == 0.0
    assert grade("Paris", "paris.") == 1.0
    assert grade(None, "x") == 0.0


def test_onboard_adds_expert(tmp_path):
    art = make_artifact(tmp_path)
    probes = tmp_path / "probes.csv"
    probes.write_text("prompt,reference\n" + "".join(
        f"{'math' if i % 2 == 0 else 'chat'} probe {i},42\n" for i in range(40)))
    calls = []
    ep = Endpoint("http://expert.test/v1", "new-model")
    result = onboard("newbie", probes, art, config_for_endpoint("newbie", ep), out=tmp_path / "out",
                     embed=fake_embed, connect=fake_openai(calls))
    assert len(calls) == 40 and calls[0] == ("http://expert.test/v1/chat/completions", "new-model", None)
    assert result["probes"] == 40 and result["mean_grade"] == pytest.approx(0.5)
    router, meta = load_artifact(tmp_path / "out")
    assert meta["experts"] == ["a", "b", "newbie"] and meta["onboarded"]["newbie"]["probes"] == 40
    old, _ = load_artifact(art)
    np.testing.assert_array_equal(router.centroids_, old.centroids_)          # no refit of the clusters
    np.testing.assert_array_equal(router.quality_[:, :2], old.quality_)       # nor of the other experts
    X, _ = fake_embed([f"{'math' if i % 2 == 0 else 'chat'} z{i}" for i in range(200)])
    s = router.predict_scores(X)[:, 2]
    assert s[0::2].mean() > s[1::2].mean() + 0.2


def test_onboard_refuses_duplicate_and_dead_expert(tmp_path):
    art = make_artifact(tmp_path)
    probes = tmp_path / "probes.csv"
    probes.write_text("prompt,reference\nmath 1,42\n")
    calls = []
    with pytest.raises(RouterError, match="already"):
        onboard("a", probes, art, config_for_endpoint("a", Endpoint("http://x/v1", "m")), embed=fake_embed,
                connect=fake_openai(calls))
    assert calls == []  # refused before any probe was sent
    dead = InMemoryConnector(lambda r: httpx.Response(503))
    with pytest.raises(RouterError, match="failed"):
        onboard("c", probes, art, config_for_endpoint("c", Endpoint("http://x/v1", "m")), embed=fake_embed,
                connect=dead)


def test_onboard_calls_the_expert_as_experts_yaml_defines_it(tmp_path, monkeypatch):
    """--config: the expert's model name, API key (from the env) and base_url come from experts.yaml."""
    cfg = tmp_path / "experts.yaml"
    cfg.write_text("experts:\n"
                   "  old:\n    base_url: http://old.test/v1\n    model: o\n"
                   "    price: {input_per_mtok: 1, output_per_mtok: 2}\n"
                   "  new:\n    base_url: ${NEW_URL:-http://localhost:9/v1}/\n    model: m1\n"
                   "    api_key: ${NEW_KEY}\n    price: {input_per_mtok: 1, output_per_mtok: 2}\n")
    monkeypatch.setenv("NEW_URL", "http://gpu.test:8000/v1")
    monkeypatch.setenv("NEW_KEY", "sk-new")
    art = make_artifact(tmp_path)
    probes = tmp_path / "probes.csv"
    probes.write_text("prompt,reference\nmath 1,42\nchat 2,42\n")
    calls = []
    result = onboard("new", probes, art, config_from_yaml(cfg, "new"), out=tmp_path / "out", embed=fake_embed,
                     connect=fake_openai(calls))
    assert calls == [("http://gpu.test:8000/v1/chat/completions", "m1", "Bearer sk-new")] * 2
    assert result["mean_grade"] == pytest.approx(0.5) and result["failed_calls"] == 0
    with pytest.raises(ValueError, match="no expert 'other'"):
        config_from_yaml(cfg, "other")


def test_onboard_cli_reports_a_bad_config_as_an_error(tmp_path, capsys):
    from router_gateway.cli import main

    cfg = tmp_path / "experts.yaml"
    cfg.write_text("experts:\n  new:\n    base_url: ftp://nope\n    model: m\n")
    art = make_artifact(tmp_path)
    probes = tmp_path / "probes.csv"
    probes.write_text("prompt,reference\nmath 1,42\n")
    assert main(["onboard", "new", "--probes", str(probes), "--artifact", str(art), "--config", str(cfg)]) == 1
    assert "base_url" in capsys.readouterr().err
