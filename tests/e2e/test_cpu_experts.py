"""The vLLM-CPU experts of deploy/cpu answer the OpenAI API the gateway forwards to."""
from __future__ import annotations

import httpx
import pytest
import yaml

from tests.support.vllm import REPO

pytestmark = pytest.mark.vllm


def test_each_expert_lists_its_served_name_with_the_registry_context_window(vllm_experts):
    registry = yaml.safe_load((REPO / "experts.yaml").read_text())["experts"]
    for name, url in vllm_experts.items():
        models = httpx.get(f"{url}/models", timeout=5).json()["data"]
        assert [m["id"] for m in models] == [name]
        assert models[0]["max_model_len"] == registry[name]["context_window"]  # 2048; Gemma 1024


@pytest.mark.parametrize("name", ["smollm2-dense", "smollm2-moe", "gemma3-270m"])
def test_expert_answers_a_chat_with_usage(vllm_experts, name):
    if name not in vllm_experts:
        pytest.skip(f"{name} is not running (deploy/cpu/experts.sh start; setup skips Gemma if RG_WITH_GEMMA=0)")
    resp = httpx.post(f"{vllm_experts[name]}/chat/completions", timeout=120, json={
        "model": name, "messages": [{"role": "user", "content": "Name a colour."}],
        "temperature": 0, "max_tokens": 16})
    resp.raise_for_status()
    body = resp.json()
    assert body["model"] == name
    assert body["choices"][0]["message"]["content"].strip()
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    assert 0 < body["usage"]["completion_tokens"] <= 16


def test_unknown_model_is_a_404_not_a_crash(vllm_experts):
    url = vllm_experts["smollm2-dense"]
    resp = httpx.post(f"{url}/chat/completions", timeout=30, json={
        "model": "no-such-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert resp.status_code == 404
