"""Routing quality of the ``static-tuned`` recipe fitted on every prompt of the data directory, cross-fitted.

``eval.static_tuned_eval`` fits the map on the evaluated table's training folds (plus chosen other
tables). The build fits it on every prompt under ``../shared/data`` (59k: the routing tables, the
RouteLLM and LLMRouter sources, the labelled domain sets). To score that recipe honestly, for each
fold ``f`` of the evaluated table the map is fitted on the whole corpus *minus* every prompt that
shares a question with fold ``f``: a corpus prompt is left out when it shares any run of 8 words
(lower-cased) with a fold-``f`` prompt, or is one of them (short prompts: the whole text). The same
question under another template (llmrouter's GSM8K rows, the RouteLLM response files) is therefore
left out too, and no held-out prompt ever shapes the map.

The map's targets are MiniLM (onnx int8, the serving model) embeddings of the corpus, read from the
shared cache; the reference router runs on the table's MiniLM embeddings (``--minilm``: torch, as
``router-gateway eval`` does, or onnx). Every router is scored on the same folds (the table's
``fold`` column) with the same pooled out-of-fold metrics as ``eval.harness``::

    python -m eval.static_corpus_eval routellm_gsm8k --init ISOLATED.npy --routers knn,cluster \\
        --variants sif1e-4:1e-4 --json out.json

``ISOLATED.npy``: the raw isolated-token vectors (``static_backend.token_vectors``, no post-processing);
a variant ``sifA:R`` is SIF weighting with coefficient A (``none``: unweighted) and ridge R.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from eval.harness import embed_table, fold_ids, log, resolve_routers
from eval.static_tuned_eval import DATA, encode, oof_predictions, pool, score
from eval.tables import load_eval_table

NGRAM = 8
_WORD = re.compile(r"\w+")


def signatures(text: str) -> set[int]:
    """Hashes of the text's runs of NGRAM lower-cased words (the whole text when shorter)."""
    words = _WORD.findall(text.lower())
    if len(words) < NGRAM:
        return {hash(" ".join(words))}
    return {hash(" ".join(words[i:i + NGRAM])) for i in range(len(words) - NGRAM + 1)}


def corpus_outside(fold_prompts: list[str], corpus_sigs: list[set[int]]) -> np.ndarray:
    """Mask of corpus prompts that share no signature with ``fold_prompts``."""
    held: set[int] = set()
    for text in fold_prompts:
        held |= signatures(text)
    return np.fromiter((not (s & held) for s in corpus_sigs), dtype=bool, count=len(corpus_sigs))


def load_corpus(max_tokens: int, sources: str = ""):
    """(prompts, token ids, onnx MiniLM embeddings, signatures) of every prompt under DATA (or under
    its subdirectories ``sources``, comma-separated)."""
    from router_gateway.embedding import make_embedder
    from router_gateway.embedding.disk_cache import embed_cached
    from router_gateway.embedding.tuned_static import corpus_prompts
    dirs = [DATA / s for s in sources.split(",") if s] or [DATA]
    prompts = list(dict.fromkeys(p for d in dirs for p in corpus_prompts(d)))
    log(f"corpus: {len(prompts)} prompts under {', '.join(map(str, dirs))}")
    Y = embed_cached(make_embedder("onnx"), prompts)
    return prompts, encode(prompts, max_tokens), Y, [signatures(p) for p in prompts]


def make_init(raw: np.ndarray, sif: str) -> np.ndarray:
    from router_gateway.embedding.static_backend import post_process
    return post_process(raw, pca_dims=None, sif_coefficient=None if sif == "none" else float(sif))


def cross_fitted(table, folds, enc_table, corpus, init, ridge) -> dict[int, np.ndarray]:
    """For each fold: the table's prompts pooled over the map fitted without that fold's questions."""
    from router_gateway.embedding.static_tuning import linear_start
    _, enc_c, Y_c, sigs = corpus
    out = {}
    for f in np.unique(folds):
        t0 = time.perf_counter()
        keep = corpus_outside([p for p, k in zip(table.prompts, folds == f) if k], sigs)
        tbl = linear_start([enc_c[i] for i in np.flatnonzero(keep)], Y_c[keep], init, ridge=ridge)
        out[int(f)] = pool(tbl, enc_table)
        log(f"  fold {f}: map fitted on {int(keep.sum())} of {len(keep)} corpus prompts "
            f"({time.perf_counter() - t0:.0f} s)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tables", nargs="+")
    p.add_argument("--init", required=True, help=".npy raw isolated-token vectors (vocab, 384)")
    p.add_argument("--routers", default="knn", help="comma list or 'all'")
    p.add_argument("--variants", default="1e-4:1e-4", help="comma list of SIF:RIDGE")
    p.add_argument("--minilm", default="torch", choices=("torch", "onnx"))
    p.add_argument("--no-reference", action="store_true", help="skip the MiniLM routers")
    p.add_argument("--max-tokens", type=int, default=254)
    p.add_argument("--sources", default="", help="subdirectories of the data dir for the corpus (default: all)")
    p.add_argument("--json")
    args = p.parse_args(argv)
    raw = np.load(args.init)
    corpus = load_corpus(args.max_tokens, args.sources)
    results: dict = {}
    for name in args.tables:
        table = load_eval_table(DATA / "bench" / f"{name}.csv")
        folds = fold_ids(table, 5, 0)
        enc = encode(table.prompts, args.max_tokens)
        embeddings = {} if args.no_reference else {f"minilm-{args.minilm}": (lambda Y: lambda f: Y)(
            embed_table(table, args.minilm))}
        for variant in args.variants.split(","):
            sif, _, ridge = variant.partition(":")
            E = cross_fitted(table, folds, enc, corpus, make_init(raw, sif), float(ridge))
            embeddings[f"static-tuned sif{sif} ridge{ridge}"] = (lambda E: lambda f: E[int(f)])(E)
        for router in resolve_routers(args.routers):
            for label, X_of_fold in embeddings.items():
                t0 = time.perf_counter()
                m = score(oof_predictions(router, X_of_fold, table, folds, 0), table)
                results.setdefault(name, {}).setdefault(router, {})[label] = m["auc"]
                log(f"{name} {router} {label}: auc {m['auc']:.4f} ({time.perf_counter() - t0:.0f} s)")
                if args.json:  # written as it goes: a long run keeps what it has
                    Path(args.json).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
