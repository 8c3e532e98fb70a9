"""What a contextual student embedder would cost per routing decision, before anyone trains one.

Issue 19 asks for MiniLM's routing quality at a proxy's cost. Static tables (a lookup and a mean)
cost ~0.06 ms a prompt but lose 0.004-0.006 auc in some cells (eval/static_tuned_report.md); MiniLM
(6 layers, 384 wide) costs 15-30 ms. A distilled transformer student sits between them, and its
cost does not depend on its weights: this script exports students of several sizes with random
weights (and MiniLM cut to its first layers, the natural initialisation of a student) through the
same ONNX int8 recipe as the serving embedder, and times them on the decision benchmark's ~200-token
prompt, side by side in one run with MiniLM at shorter token budgets and with ``static-tuned``::

    python -m eval.bench.student_cost [--calls 200] [--json OUT]

Figures: p50 wall time of one embedding call and CPU per call (one onnxruntime thread, as served).
Run it with ``OPENBLAS_NUM_THREADS=1`` so that numpy's pooling does not spin idle threads.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from eval.bench.decision import LONG

#: (label, layers, hidden width); heads are 64 wide, the feed-forward 4x, as in MiniLM
STUDENTS = [("student 1x128", 1, 128), ("student 2x128", 2, 128), ("student 1x256", 1, 256),
            ("student 2x256", 2, 256), ("student 4x256", 4, 256)]
MINILM_LAYERS = [1, 2, 3]
TOKEN_BUDGETS = [16, 32, 64, 128]


def _time(embed, calls: int) -> dict:
    for _ in range(5):
        embed()
    wall, cpu0 = [], time.process_time()
    for _ in range(calls):
        t0 = time.perf_counter()
        embed()
        wall.append((time.perf_counter() - t0) * 1e3)
    return {"p50_ms": float(np.percentile(wall, 50)), "p99_ms": float(np.percentile(wall, 99)),
            "cpu_ms": (time.process_time() - cpu0) * 1e3 / calls}


def _save_student(root: Path, layers: int, width: int) -> Path:
    from transformers import BertConfig, BertModel
    config = BertConfig(vocab_size=30522, hidden_size=width, num_hidden_layers=layers,
                        num_attention_heads=max(1, width // 64), intermediate_size=4 * width,
                        max_position_embeddings=512)
    out = root / f"student-{layers}x{width}"
    BertModel(config).save_pretrained(str(out))
    return out


def _save_minilm_cut(root: Path, layers: int) -> Path:
    from transformers import AutoModel

    from router_gateway.embedding.onnx_backend import model_dir_for
    model = AutoModel.from_pretrained(str(model_dir_for()), local_files_only=True)
    model.encoder.layer = model.encoder.layer[:layers]
    model.config.num_hidden_layers = layers
    out = root / f"minilm-first-{layers}"
    model.save_pretrained(str(out))
    return out


def measure(calls: int, students=STUDENTS, minilm_layers=MINILM_LAYERS, budgets=TOKEN_BUDGETS,
            static_tuned: bool = True) -> dict:
    """Figures per embedder label: p50/p99 ms, CPU ms per call, word pieces seen, output width."""
    import torch

    from router_gateway.embedding import make_embedder
    from router_gateway.embedding.onnx_backend import OnnxEmbedder, export_onnx
    torch.set_num_threads(1)
    results: dict[str, dict] = {}

    def record(label: str, embedder) -> None:
        dim = int(embedder.embed([LONG]).shape[1])
        # the word pieces the network sees (after any truncation); a static lookup has no window
        tokens = len(embedder._tokenizer.encode(LONG).ids) if isinstance(embedder, OnnxEmbedder) else None
        results[label] = {**_time(lambda: embedder.embed([LONG]), calls), "tokens": tokens, "dim": dim}
        r = results[label]
        print(f"[student-cost] {label:<28} p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
              f"cpu {r['cpu_ms']:7.2f} ms", file=sys.stderr, flush=True)

    if static_tuned:  # needs the built table (python -m router_gateway.embedding.tuned_static DATA_DIR)
        record("static-tuned (lookup + mean)", make_embedder("static-tuned"))
    minilm = OnnxEmbedder()
    record("MiniLM 6x384 int8", minilm)
    for budget in budgets:  # the "shorter MiniLM input" option: same model, first N pieces
        minilm._tokenizer.enable_truncation(max_length=budget)
        record(f"MiniLM 6x384, {budget} tokens", minilm)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made = [(f"MiniLM first {k} layers", _save_minilm_cut(root, k)) for k in minilm_layers]
        made += [(label, _save_student(root, layers, width)) for label, layers, width in students]
        for label, model_dir in made:
            path = export_onnx(model_dir, root / f"{model_dir.name}-int8.onnx")
            record(label, OnnxEmbedder(onnx_path=path))  # MiniLM's tokenizer: same vocabulary
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--no-static-tuned", action="store_true", help="skip the static-tuned reference (no built table)")
    args = p.parse_args(argv)
    results = measure(args.calls, static_tuned=not args.no_static_tuned)
    if args.json:
        Path(args.json).write_text(json.dumps({"prompt_chars": len(LONG), "calls": args.calls,
                                               "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
