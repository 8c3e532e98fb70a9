"""Routing auc of MiniLM against its token budget: the prompt truncated to its first N word pieces.

MiniLM's cost grows with the tokens it sees, so a shorter input is one way to a cheaper decision.
This scores the same routers on the same folds with embeddings of the first N tokens, and times
one onnx int8 embedding of a prompt of N tokens (1 thread, p50 of 200 calls)::

    python -m eval.minilm_truncation_eval llmrouter --budgets 16,32,64,128 --routers knn
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from eval.harness import embed_table, fold_ids, log
from eval.static_tuned_eval import DATA, oof_predictions, score
from eval.tables import load_eval_table


def embed_truncated(prompts: list[str], budget: int) -> np.ndarray:
    """torch all-MiniLM-L6-v2 with max_seq_length = budget ([CLS] and [SEP] included)."""
    from router_gateway.embedding.torch_backend import TorchEmbedder
    embedder = TorchEmbedder(threads=1)
    embedder._model.max_seq_length = budget
    return embedder.embed(prompts)


def onnx_ms(budget: int, calls: int = 200) -> float:
    """p50 ms of one onnx int8 embedding of a prompt of ``budget`` word pieces."""
    from router_gateway.embedding.onnx_backend import OnnxEmbedder
    embedder = OnnxEmbedder(threads=1)
    embedder._tokenizer.enable_truncation(max_length=budget)
    text = "the quarterly report shows revenue growth " * budget
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        embedder.embed([text])
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.percentile(times, 50))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tables", nargs="+")
    p.add_argument("--budgets", default="16,32,64,128")
    p.add_argument("--routers", default="knn")
    p.add_argument("--time", action="store_true", help="also time onnx int8 at each budget")
    args = p.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",")]
    out: dict = {}
    for name in args.tables:
        table = load_eval_table(DATA / "bench" / f"{name}.csv")
        folds = fold_ids(table, 5, 0)
        variants = {"full (256)": embed_table(table, "torch")}
        for b in budgets:
            t0 = time.perf_counter()
            variants[f"first {b}"] = embed_truncated(table.prompts, b)
            log(f"{name}: embedded at {b} tokens in {time.perf_counter() - t0:.0f} s")
        for router in args.routers.split(","):
            for label, X in variants.items():
                auc = score(oof_predictions(router, lambda f: X, table, folds, 0), table)["auc"]
                out.setdefault(name, {}).setdefault(router, {})[label] = auc
                log(f"{name} {router} {label}: auc {auc:.4f}")
    if args.time:
        out["onnx_int8_ms_p50"] = {b: onnx_ms(b) for b in budgets + [256]}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
