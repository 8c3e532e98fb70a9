"""Routing quality of static embedders against MiniLM, with the tuned table *cross-fitted*.

A tuned static table is trained to reproduce MiniLM's embeddings of a corpus of prompts. If that
corpus contained the held-out prompts, the table would have seen them, and the auc would be
optimistic (a deployment never tunes on tomorrow's prompts). So for every fold ``f`` of the table a
tuned table is trained on the *other* folds' prompts only (the prompts the router is trained on
anyway) plus optional extra text, and fold ``f`` is embedded with it. The other bench tables are
left out of that corpus because they share questions (MMLU and GSM8K are in llmrouter too).

Every embedder is scored with the same routers, the same folds (the table's ``fold`` column) and
the same pooled out-of-fold metrics as ``eval.harness``::

    python -m eval.static_tuned_eval llmrouter routellm_mmlu routellm_gsm8k --routers knn

MiniLM embeddings come from the shared on-disk cache (torch all-MiniLM-L6-v2, or onnx int8 with
``--minilm onnx``: the serving default, and much faster to compute on a busy 2-core machine).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from eval import metrics as M
from eval.harness import build_router, embed_table, fold_ids, log
from eval.tables import load_eval_table
from router_gateway.embedding.base import normalise

#: the shared routing data (../shared/data from the repository root), or $RG_DATA
DATA = Path(os.environ.get("RG_DATA", "../shared/data"))


def encode(prompts: list[str], max_tokens: int) -> list[list[int]]:
    """Word-piece ids of each prompt, no special tokens, truncated as the static embedder does."""
    from tokenizers import Tokenizer

    from router_gateway.embedding.static_backend import model_dir_for
    tok = Tokenizer.from_file(str(model_dir_for() / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens)
    return [e.ids for e in tok.encode_batch(prompts, add_special_tokens=False)]


def pool(table: np.ndarray, encodings: list[list[int]]) -> np.ndarray:
    """Static prompt vectors: mean of the rows, L2-normalised (zero for an empty prompt)."""
    out = np.zeros((len(encodings), table.shape[1]), dtype=np.float32)
    for i, ids in enumerate(encodings):
        if ids:
            out[i] = table[ids].mean(axis=0)
    return normalise(out)


def oof_predictions(router: str, X_of_fold, table, folds: np.ndarray, seed: int,
                    train_views: list[np.ndarray] | None = None) -> np.ndarray:
    """Out-of-fold predicted scores; ``X_of_fold(f)`` gives the embeddings used for fold ``f``.

    ``train_views``: the router is trained on these embeddings of the training prompts instead
    (each a full (n, d) matrix, stacked with the same labels: e.g. MiniLM's, or MiniLM's and the
    query embedder's), and queried with ``X_of_fold``'s."""
    pred = np.full(table.scores.shape, np.nan)
    for f in np.unique(folds):
        X, test = X_of_fold(f), folds == f
        views = [X] if not train_views else [V if V is not None else X for V in train_views]
        r = build_router(router, seed)
        extra = {}
        if r.takes_domains:
            extra["domains"] = [t for t, tr in zip(table.tasks, ~test) if tr] * len(views)
        r.fit(np.vstack([V[~test] for V in views]), np.vstack([table.scores[~test]] * len(views)),
              cost=np.vstack([table.costs[~test]] * len(views)), experts=table.models, **extra)
        pred[test] = r.predict_scores(X[test])
    return pred


def score(pred: np.ndarray, table) -> dict:
    true, cost = table.scores, table.costs
    base = M.baselines(true, cost, table.models)
    grid = M.cost_weight_grid(cost)
    oracle, _, _ = M.oracle(true, cost, base, grid)
    single = M.single_model_frontier(base)
    metrics, _, _ = M.evaluate_scores(pred, true, cost, base, grid, oracle["auc"], single["auc"])
    return metrics


def by_fold(make_table, enc: list[list[int]], folds: np.ndarray) -> dict[int, np.ndarray]:
    """For each fold f, the table's prompts embedded with ``make_table(train_rows)``: a table built
    without fold f's prompts."""
    out = {}
    for f in np.unique(folds):
        t0 = time.perf_counter()
        out[int(f)] = pool(make_table(np.flatnonzero(folds != f)), enc)
        log(f"  fold {f}: table built in {time.perf_counter() - t0:.0f} s")
    return out


def extra_corpus(names: str, exclude_task: str | None, minilm: str, max_tokens: int):
    """Prompts of other tables added to every fold's corpus, minus rows whose task matches
    ``exclude_task`` (the questions the evaluated table shares with them, e.g. llmrouter's GSM8K
    rows when gsm8k is evaluated): (token ids, MiniLM embeddings)."""
    import re
    prompts: list[str] = []
    for name in [n for n in names.split(",") if n]:
        t = load_eval_table(DATA / "bench" / f"{name}.csv")
        keep = [i for i, task in enumerate(t.tasks) if not (exclude_task and re.search(exclude_task, task, re.I))]
        prompts += [t.prompts[i] for i in keep]
        log(f"extra corpus: {len(keep)} of {len(t)} prompts of {name}")
    if not prompts:
        return [], None
    from eval.harness import _LazyTorchEmbedder
    from router_gateway.embedding import make_embedder
    from router_gateway.embedding.disk_cache import embed_cached
    embedder = _LazyTorchEmbedder() if minilm == "torch" else make_embedder(minilm)
    return encode(prompts, max_tokens), embed_cached(embedder, prompts)


def reshape(table: np.ndarray, encodings: list[list[int]], targets: np.ndarray, how: str) -> np.ndarray:
    """The linear map's table with its output's geometry changed, at no serving cost (an affine map
    of every row is the same map of their mean). A ridge fit predicts E[MiniLM | static], so its
    outputs are shrunk towards their mean and the common component weighs more in a cosine:

    - ``center``: subtract the training prompts' mean output (cosines between deviations);
    - ``recolor``: along each principal direction of the outputs, scale their spread to MiniLM's;
    - ``whiten[:eps]``: ZCA-whiten the outputs (every direction the same spread; eps x the largest
      variance is added so that near-empty directions do not explode)."""
    from router_gateway.embedding.static_tuning import mean_rows
    P = mean_rows(table, encodings).astype(np.float64)
    Y = np.asarray(targets, np.float64)
    mu_p, mu_y = P.mean(axis=0), Y.mean(axis=0)
    var, U = np.linalg.eigh(np.cov(P - mu_p, rowvar=False, bias=True))
    var = np.maximum(var, 1e-12)
    kind, _, eps = how.partition(":")
    if kind == "center":
        return (table - mu_p).astype(np.float32)
    if kind == "recolor":
        scale = np.sqrt((((Y - mu_y) @ U) ** 2).mean(axis=0) / var)
        return ((table - mu_p) @ (U * scale) @ U.T + mu_y).astype(np.float32)
    if kind == "whiten":
        return ((table - mu_p) @ (U / np.sqrt(var + float(eps or 1e-3) * var.max())) @ U.T).astype(np.float32)
    raise ValueError(f"unknown reshaping {how!r} (center, recolor, whiten[:eps])")


def variants(Y: np.ndarray, enc: list[list[int]], init: np.ndarray, names: list[str], fit_kw: dict,
             extra: tuple[list[list[int]], np.ndarray | None] = ([], None)):
    """Cross-fitted static tables: ``linear`` (one affine map of the isolated-token table),
    ``tuned`` (per-token training from the isolated-token table), ``linear+tuned`` (training
    started from, and anchored to, the linear map), ``center`` / ``recolor`` / ``whiten[:eps]``
    (the linear map, then :func:`reshape` fitted on the same prompts)."""
    from router_gateway.embedding.static_tuning import fit_table, linear_start
    def sub(rows):  # the fold's training prompts plus the extra corpus
        return [enc[i] for i in rows] + extra[0]

    def tgt(rows):
        return Y[rows] if extra[1] is None else np.vstack([Y[rows], extra[1]])

    makers = {
        "linear": lambda rows: linear_start(sub(rows), tgt(rows), init),
        "tuned": lambda rows: fit_table(sub(rows), tgt(rows), init, progress=None, **fit_kw),
        "linear+tuned": lambda rows: fit_table(sub(rows), tgt(rows), linear_start(sub(rows), tgt(rows), init),
                                               progress=None, **{"lr": 0.01, **fit_kw}),
    }
    def reshaped(how):
        def make(rows):
            enc_rows, targets = sub(rows), tgt(rows)
            return reshape(linear_start(enc_rows, targets, init), enc_rows, targets, how)
        return make

    out = {}
    for name in names:  # "linear:1e-5" sets the ridge of the linear map
        if name.partition(":")[0] in ("center", "recolor", "whiten"):
            out[name] = reshaped(name)
            continue
        base, _, ridge = name.partition(":")
        out[name] = ((lambda r: lambda rows: linear_start(sub(rows), tgt(rows), init, ridge=r))(float(ridge))
                     if base == "linear" and ridge else makers[base])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tables", nargs="+")
    p.add_argument("--routers", default="knn")
    p.add_argument("--init", required=True, help=".npy isolated-token table (vocab, dim) to start from")
    p.add_argument("--baseline", help=".npy static table to score as is (e.g. the shipped static one)")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--anchor", type=float, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--variants", default="linear,tuned,linear+tuned")
    p.add_argument("--minilm", default="torch", choices=("torch", "onnx"),
                   help="MiniLM backend of the reference embeddings and the tuning targets (cached)")
    p.add_argument("--sample", type=int, help="only the first N prompts of a seeded (0) permutation")
    p.add_argument("--extra", default="", help="other tables whose prompts join every fold's corpus")
    p.add_argument("--extra-exclude-task", help="regex: extra rows with a matching task are left out")
    p.add_argument("--only-variants", action="store_true",
                   help="score only the tuned variants (not MiniLM nor the isolated-token start)")
    p.add_argument("--seed", type=int, default=0, help="the routers' seed (its spread is the noise of a comparison)")
    p.add_argument("--train-on", default="same", choices=("same", "minilm", "both"),
                   help="the static variants' routers are trained on the same embedder (default), on "
                        "MiniLM's embeddings of the training prompts, or on both stacked (queries: static)")
    p.add_argument("--json", help="results so far, rewritten after every router")
    args = p.parse_args(argv)
    fit_kw = {k: getattr(args, k) for k in ("epochs", "anchor", "lr") if getattr(args, k) is not None}
    init = np.load(args.init)
    results = {}
    for name in args.tables:
        table = load_eval_table(DATA / "bench" / f"{name}.csv")
        if args.sample and args.sample < len(table):
            table = table.subset(np.random.default_rng(0).permutation(len(table))[:args.sample])
        folds = fold_ids(table, 5, 0)
        Y = embed_table(table, args.minilm)
        enc = encode(table.prompts, args.max_tokens)
        embeddings = {} if args.only_variants else {
            "minilm": lambda f: Y, "static-init": (lambda E: lambda f: E)(pool(init, enc))}
        if args.baseline:
            base_E = pool(np.load(args.baseline), encode(table.prompts, 512))
            embeddings["static-shipped"] = lambda f: base_E
        extra = extra_corpus(args.extra, args.extra_exclude_task, args.minilm, args.max_tokens)
        for label, make_table in variants(Y, enc, init, args.variants.split(","), fit_kw, extra).items():
            E = by_fold(make_table, enc, folds)
            embeddings[f"static {label}{' +extra' if args.extra else ''} (cross-fitted)"] = (lambda E: lambda f: E[int(f)])(E)
        views = {"same": None, "minilm": [Y], "both": [Y, None]}[args.train_on]
        for router in args.routers.split(","):
            for label, X_of_fold in embeddings.items():
                static = label.startswith("static")
                if static and views:
                    label += f" [trained on {args.train_on}]"
                m = score(oof_predictions(router, X_of_fold, table, folds, args.seed,
                                          views if static else None), table)
                results.setdefault(name, {}).setdefault(router, {})[label] = m["auc"]
                log(f"{name} {router} {label}: auc {m['auc']:.4f}")
                if args.json:
                    Path(args.json).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
