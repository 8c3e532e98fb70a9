"""How much routing quality the task label alone is worth: reference "routers" that see the TRUE task of
every held-out prompt, something no deployed router has.

Why: a router's predicted quality for an expert mixes (a) which task the prompt belongs to and (b) how hard
the prompt is within its task. These references measure both on the same folds, cost-weight grid and
metrics as ``eval.harness`` (pooled out-of-fold predictions):

- ``task-mean``: each expert's mean score on the training prompts of the prompt's true task;
- ``task+knn``: that mean blended with the k nearest training prompts of the same task (cosine on the
  MiniLM embeddings), shrunk toward the task mean by ``prior`` pseudo-counts;
- ``task+text``: that mean plus a ridge regression of the residual on TF-IDF word 1-2 grams of the raw
  prompt text and the embedding, fitted within each task (needs scikit-learn).

If the task-label references barely beat ``task-mean``, the embeddings (and the text) carry little
within-task signal, and ``task-mean`` is close to the best frontier any router on these features can
reach. Usage: ``python -m eval.ceiling TABLE.csv [--out DIR]`` (writes DIR/ceiling.md and .json).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

import numpy as np

from eval import metrics as M
from eval.harness import embed_table, fold_ids, log
from eval.tables import load_eval_table
from routers.data import RoutingTable

FitPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _per_task(table: RoutingTable, tr: np.ndarray, te: np.ndarray,
              within: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None) -> np.ndarray:
    """Predictions for the ``te`` rows: the true task's training mean, plus ``within``'s residual model."""
    tasks = np.asarray(table.tasks)
    Y = table.scores
    out = np.empty((int(te.sum()), Y.shape[1]))
    global_mean = np.nanmean(Y[tr], axis=0)
    for task in np.unique(tasks[te]):
        rows_tr = np.flatnonzero(tr & (tasks == task))
        rows_te = tasks[te] == task
        mean = np.nanmean(Y[rows_tr], axis=0) if len(rows_tr) else global_mean
        mean = np.where(np.isnan(mean), global_mean, mean)
        if within is None or len(rows_tr) < 10:
            out[rows_te] = mean
        else:
            out[rows_te] = np.clip(within(rows_tr, np.flatnonzero(te)[rows_te], mean), 0.0, 1.0)
    return out


def task_mean(table: RoutingTable, X: np.ndarray) -> FitPredict:
    return lambda tr, te: _per_task(table, tr, te, None)


def task_knn(table: RoutingTable, X: np.ndarray, k: int = 40, prior: float = 40.0) -> FitPredict:
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    Y = np.nan_to_num(table.scores)

    def within(rows_tr, rows_te, mean):
        kk = min(k, len(rows_tr) - 1)
        sims = Xn[rows_te] @ Xn[rows_tr].T
        idx = np.argpartition(-sims, kk, axis=1)[:, :kk]
        neighbours = Y[rows_tr][idx].mean(axis=1)
        return (kk * neighbours + prior * mean) / (kk + prior)

    return lambda tr, te: _per_task(table, tr, te, within)


def task_text(table: RoutingTable, X: np.ndarray, alpha: float = 30.0) -> FitPredict:
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    prompts = np.asarray(table.prompts, dtype=object)
    Y = np.nan_to_num(table.scores)

    def within(rows_tr, rows_te, mean):
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(prompts[rows_tr])

        def feats(rows):
            return hstack([vec.transform(prompts[rows]), csr_matrix(X[rows])]).tocsr()

        model = Ridge(alpha=alpha).fit(feats(rows_tr), Y[rows_tr] - mean)
        return mean + model.predict(feats(rows_te))

    return lambda tr, te: _per_task(table, tr, te, within)


REFERENCES: dict[str, Callable[..., FitPredict]] = {
    "task-mean": task_mean, "task+knn": task_knn, "task+text": task_text}


def ceiling(table: RoutingTable, X: np.ndarray, n_folds: int = 5, seed: int = 0) -> dict:
    """Every reference's metrics on pooled out-of-fold predictions (same protocol as the harness)."""
    true, cost = table.scores, table.costs
    base = M.baselines(true, cost, table.models)
    grid = M.cost_weight_grid(cost)
    single = M.single_model_frontier(base)
    oracle, _, _ = M.oracle(true, cost, base, grid)
    folds = fold_ids(table, n_folds, seed)
    out = {"table": table.name, "n_prompts": len(table), "n_tasks": len(set(table.tasks)),
           "single_model_frontier_auc": single["auc"], "oracle_auc": oracle["auc"], "references": {}}
    for name, make in REFERENCES.items():
        log(f"{name}: cross-validating")
        fit_predict = make(table, X)
        pred = np.zeros_like(true)
        for f in np.unique(folds):
            pred[folds == f] = fit_predict(folds != f, folds == f)
        metrics, _, _ = M.evaluate_scores(pred, true, cost, base, grid, oracle["auc"], single["auc"])
        out["references"][name] = {k: metrics.get(k) for k in
                                   ("auc", "gap_closed", "max_quality", "cost_to_match_best")}
    return out


def to_markdown(result: dict) -> str:
    lines = [f"# Task-label ceiling: `{result['table']}`\n",
             f"{result['n_prompts']} prompts, {result['n_tasks']} tasks. These references see the TRUE task of each "
             "held-out prompt (no deployed router does); same folds, cost-weight grid and metrics as report.md. "
             f"Single-model frontier auc {result['single_model_frontier_auc']:.4f}, "
             f"oracle auc {result['oracle_auc']:.4f}. Made by `python -m eval.ceiling`.\n",
             "| reference | auc | gap closed | max quality | cost to match best |", "| --- | --- | --- | --- | --- |"]
    for name, m in result["references"].items():
        ctm = "-" if m["cost_to_match_best"] is None else f"{m['cost_to_match_best']:.2f}x"
        lines.append(f"| {name} | {m['auc']:.4f} | {m['gap_closed']:.4f} | {m['max_quality']:.4f} | {ctm} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("table")
    ap.add_argument("--out", help="directory for ceiling.md and ceiling.json")
    args = ap.parse_args(argv)
    table = load_eval_table(args.table)
    result = ceiling(table, embed_table(table))
    text = to_markdown(result)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "ceiling.md").write_text(text)
        (out / "ceiling.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
