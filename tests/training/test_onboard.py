"""Onboarding an expert into a cluster artifact through a fake OpenAI server (httpx.MockTransport)."""
from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from router_gateway.training.onboarding import Endpoint, endpoint_from_yaml, grade, onboard
from routers.artifact import load_artifact, save_artifact
from routers.base import RouterError
from routers.cluster import ClusterRouter
from tests.training.conftest import FAKE_INFO, fake_embed


def fake_openai(calls):
    """Answers math probes correctly ('42'), chat probes wrongly."""
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append((str(request.url), body["model"]))
        prompt = body["messages"][-1]["content"]
        answer = "The answer is 42." if "math" in prompt else "I do not know."
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": answer}}]})
    return httpx.MockTransport(handler)


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
    result = onboard("newbie", probes, art, ep, out=tmp_path / "out", embed=fake_embed,
                     transport=fake_openai(calls))
    assert len(calls) == 40 and calls[0] == ("http://expert.test/v1/chat/completions", "new-model")
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
    with pytest.raises(RouterError, match="already"):
        onboard("a", probes, art, Endpoint("http://x/v1", "m"), embed=fake_embed, transport=fake_openai([]))
    dead = httpx.MockTransport(lambda r: httpx.Response(503))
    with pytest.raises(RouterError, match="failed"):
        onboard("c", probes, art, Endpoint("http://x/v1", "m"), embed=fake_embed, transport=dead)


def test_endpoint_from_yaml(tmp_path, monkeypatch):
    cfg = tmp_path / "experts.yaml"
    cfg.write_text("experts:\n  new:\n    base_url: ${NEW_URL:-http://localhost:9/v1}/\n    model: m1\n")
    assert endpoint_from_yaml(cfg, "new") == Endpoint("http://localhost:9/v1", "m1", None)
    monkeypatch.setenv("NEW_URL", "http://gpu:8000/v1")
    assert endpoint_from_yaml(cfg, "new").base_url == "http://gpu:8000/v1"
    with pytest.raises(ValueError, match="no expert"):
        endpoint_from_yaml(cfg, "other")
