"""Sparse upcycling (deploy/cpu/upcycle.py) on a tiny random Llama: the Mixtral it writes computes the same
logits as the dense model. Needs torch + transformers (the project's .venv has both), no vLLM, no download."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

UPCYCLE = Path(__file__).resolve().parents[2] / "deploy" / "cpu" / "upcycle.py"


def load_upcycle():
    spec = importlib.util.spec_from_file_location("rg_upcycle", UPCYCLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_dense(tmp_path_factory):
    """A random 2-layer Llama with tied embeddings (like SmolLM2), saved as safetensors."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   tie_word_embeddings=True)
    model = transformers.LlamaForCausalLM(cfg).eval()
    out = tmp_path_factory.mktemp("dense")
    model.save_pretrained(out, safe_serialization=True)
    return out, model


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("router_std,atol", [(0.0, 1e-6), (0.5, 1e-5)])
def test_upcycled_mixtral_equals_dense(tiny_dense, tmp_path, router_std, atol):
    dense_dir, dense = tiny_dense
    up = load_upcycle()
    out = up.upcycle(dense_dir, tmp_path / "moe", n_experts=4, top_k=2, router_std=router_std)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["MixtralForCausalLM"] and cfg["num_local_experts"] == 4
    moe = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(moe).__name__ == "MixtralForCausalLM"
    ids = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(1))
    expected, got = logits(dense, ids), logits(moe, ids)
    torch.testing.assert_close(got, expected, atol=atol, rtol=1e-5)
    if router_std:
        gate = moe.model.layers[0].mlp.gate.weight if hasattr(moe.model.layers[0], "mlp") else \
            moe.model.layers[0].block_sparse_moe.gate.weight
        assert gate.abs().sum() > 0, "the random router was not loaded"


def test_mixtral_config_rejects_what_mixtral_cannot_hold():
    up = load_upcycle()
    base = {"model_type": "llama", "hidden_size": 32, "num_attention_heads": 4}
    with pytest.raises(ValueError):
        up.mixtral_config({**base, "model_type": "gemma3_text"}, 4, 2)
    with pytest.raises(ValueError):
        up.mixtral_config(base, 4, 5)
    with pytest.raises(ValueError):
        up.mixtral_config({**base, "mlp_bias": True}, 4, 2)
