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


def expert_picks(moe, ids) -> torch.Tensor:
    """How many tokens (over all layers) each expert is among the top-k picks for."""
    with torch.no_grad():
        out = moe(input_ids=ids, output_router_logits=True)
    k = moe.config.num_experts_per_tok
    counts = torch.zeros(moe.config.num_local_experts, dtype=torch.long)
    for layer_logits in out.router_logits:
        picks = layer_logits.topk(k, dim=-1).indices.flatten()
        counts += torch.bincount(picks, minlength=counts.numel())
    return counts


def test_default_router_spreads_tokens_over_every_expert(tiny_dense, tmp_path):
    """The default (random) router sends tokens to all experts, so no expert is dead weight."""
    dense_dir, _ = tiny_dense
    up = load_upcycle()
    moe = transformers.AutoModelForCausalLM.from_pretrained(
        up.upcycle(dense_dir, tmp_path / "moe"), dtype=torch.float32).eval()
    ids = torch.randint(0, 97, (4, 16), generator=torch.Generator().manual_seed(2))
    counts = expert_picks(moe, ids)
    assert (counts > 0).all(), f"experts never picked: {counts.tolist()}"


@pytest.mark.parametrize("router_std", [None, 0.0])
def test_silencing_an_expert_changes_output_exactly_when_tokens_reach_it(tiny_dense, tmp_path, router_std):
    """`perturb` zeroes the least-picked expert. Default router: it still gets tokens, so the logits change.
    Zero router (the old init): every token ties and goes to the same two experts, the other two are dead
    weight, and silencing one changes nothing."""
    dense_dir, dense = tiny_dense
    up = load_upcycle()
    kwargs = {} if router_std is None else {"router_std": router_std}
    moe_dir = up.upcycle(dense_dir, tmp_path / "moe", **kwargs)
    ids = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(1))
    counts = expert_picks(transformers.AutoModelForCausalLM.from_pretrained(moe_dir, dtype=torch.float32).eval(), ids)
    expert = int(counts.argmin())
    bent = up.perturb_expert(moe_dir, tmp_path / "bent", expert=expert)
    got = logits(transformers.AutoModelForCausalLM.from_pretrained(bent, dtype=torch.float32).eval(), ids)
    differs = not torch.allclose(got, logits(dense, ids), atol=1e-4)
    assert differs is bool(counts[expert] > 0)
    assert differs is (router_std is None), f"picks per expert: {counts.tolist()}"


def test_perturb_rejects_an_expert_the_checkpoint_does_not_have(tiny_dense, tmp_path):
    up = load_upcycle()
    moe_dir = up.upcycle(tiny_dense[0], tmp_path / "moe")
    with pytest.raises(ValueError):
        up.perturb_expert(moe_dir, tmp_path / "bent", expert=4)
