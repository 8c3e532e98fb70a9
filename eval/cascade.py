"""Cascade scenario: try the cheap expert, check its answer, escalate when unsure.

On a table with answers (``answer:<model>`` columns) the cheapest answered model is tier 1 and the
other (best remaining) model tier 2. Every prompt's outcome is computed from the table: an accepted
cheap answer costs ``c_cheap`` and scores the cheap model's score; an escalated one costs
``c_cheap + c_strong`` and scores the strong model's; a prompt sent straight to the strong model costs
``c_strong``. Operating points come from one-parameter sweeps, like a router's cost-weight sweep, so
the frontiers and metrics (auc, gap closed, cost to match the best single model) are the routers'.

Verifiers (each out-of-fold on the table's folds; nothing is fitted or tuned on a test fold):
- ``features``: logistic regression on the hand-made answer features (router_gateway.cascade.answer_features);
- ``minilm+features``: plus MiniLM embeddings of the prompt and of the cheap answer;
- ``<router>+features``, ``<router>+minilm+features``: plus the router's prompt-level estimates for
  both models (logits). On training
  rows those estimates are the router's inner cross-validated predictions (stacking), so a verifier
  never learns from a router that saw its test fold.
The L2 strength of each logistic model is chosen by an inner cross-validation on the training folds.

Policies:
- ``threshold``: always ask the cheap model; accept iff P(cheap right | prompt, answer) >= t; t sweeps.
- ``gain``: always ask the cheap model; escalate iff P(strong right | ...) - P(cheap right | ...) >
  lam * c_strong (both from the verifier's inputs); lam sweeps the cost-weight grid.
- ``routing`` (cascade routing): as ``gain``, and before any call, send the prompt straight to the
  strong model when that is worth more than trying the cheap one first: q_strong - lam c_strong >
  E[max(p, q_strong - lam c_strong)] - lam c_cheap, where p is the verifier's post-answer estimate,
  modelled as the router's prompt-level estimate m plus the training rows' standardised residual
  spread (p ~ m + z sqrt(m (1 - m)), z from training-row quantiles). ``<verifier>, prior <router>``:
  the first stacked verifier with another router's out-of-fold estimates as m and q_strong.
"""
from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eval import metrics as M
from eval.harness import build_router, evaluate, fold_ids, log
from router_gateway.cascade.answer_features import FEATURE_NAMES, feature_matrix
from router_gateway.cascade.logistic import fit_logistic_cv
from routers.data import RoutingTable
from routers.registry import available_routers, router_class


# -- data ----------------------------------------------------------------------------------------
def load_answers(path: str | Path, table: RoutingTable) -> dict[str, list[str]]:
    """``answer:<model>`` columns aligned with ``table``'s prompts (matched by prompt text)."""
    csv.field_size_limit(sys.maxsize)
    by_prompt: dict[str, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        models = [h[len("answer:"):] for h in reader.fieldnames or [] if h.startswith("answer:")]
        for row in reader:
            by_prompt.setdefault(row["prompt"], {m: row.get(f"answer:{m}") or "" for m in models})
    return {m: [by_prompt.get(p, {}).get(m, "") for p in table.prompts] for m in models if m in table.models}


def _is_baseline(name: str) -> bool:
    """A registered baseline: it reads no prompt, so it has no prompt-level estimate to combine or plot."""
    return name in available_routers() and router_class(name).baseline


def cascade_pair(table: RoutingTable, answers: dict[str, list[str]]) -> tuple[int, int]:
    """(cheap, strong) model indices: the cheapest answered model, then the best of the others."""
    mean_cost = np.nanmean(table.costs, axis=0)
    mean_q = np.nanmean(table.scores, axis=0)
    answered = [table.models.index(m) for m in answers]
    if not answered or len(table.models) < 2:
        raise ValueError(f"{table.name}: a cascade needs answer:<model> columns and two models")
    cheap = min(answered, key=lambda j: mean_cost[j])
    strong = max((j for j in range(len(table.models)) if j != cheap), key=lambda j: mean_q[j])
    return cheap, strong


def embed_texts(texts: list[str], backend: str = "torch") -> np.ndarray:
    """MiniLM embeddings of answers, via the shared on-disk cache."""
    from eval.harness import _LazyTorchEmbedder
    from router_gateway.embedding import make_embedder
    from router_gateway.embedding.disk_cache import embed_cached

    embedder = _LazyTorchEmbedder() if backend == "torch" else make_embedder(backend)
    return embed_cached(embedder, [t or " " for t in texts])


# -- stacked router estimates ----------------------------------------------------------------------
def stacked_router_scores(name: str, X: np.ndarray, table: RoutingTable, folds: np.ndarray, seed: int,
                          outer: np.ndarray) -> dict[int, np.ndarray]:
    """For each outer fold f: the router's inner out-of-fold scores on f's training rows (NaN on f)
    with f's test rows filled from ``outer`` (the router trained on all of f's training rows)."""
    out: dict[int, np.ndarray] = {}
    for f in np.unique(folds):
        pred = np.full(table.scores.shape, np.nan)
        pred[folds == f] = outer[folds == f]
        for g in np.unique(folds):
            if g == f:
                continue
            train = (folds != f) & (folds != g)
            router = build_router(name, seed)
            router.fit(X[train], table.scores[train], cost=table.costs[train], experts=table.models)
            pred[folds == g] = router.predict_scores(X[folds == g])
        out[int(f)] = pred
    return out


# -- verifiers -----------------------------------------------------------------------------------
@dataclass
class VerifierOutput:
    """Out-of-fold estimates for every prompt: cheap right, strong right, and the prompt-level m."""

    name: str
    p_cheap: np.ndarray
    p_strong: np.ndarray
    prior: np.ndarray | None = None  # (n, k) the router's out-of-fold prompt-level estimates
    residual_z: dict[int, np.ndarray] | None = None  # per outer fold: training rows' standardised residuals


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


def cross_fit_verifier(name: str, blocks: list[np.ndarray] | dict[int, list[np.ndarray]],
                       table: RoutingTable, folds: np.ndarray, cheap: int, strong: int,
                       prior: dict[int, np.ndarray] | None = None,
                       outer: np.ndarray | None = None) -> VerifierOutput:
    """Fit the two logistic models fold by fold; ``blocks`` are feature blocks (or, per fold, when
    they depend on the fold, as stacked router scores do)."""
    n = len(table)
    p_cheap, p_strong = np.full(n, np.nan), np.full(n, np.nan)
    residuals: dict[int, np.ndarray] = {}
    for f in np.unique(folds):
        test = folds == f
        F = np.hstack([_reduce(b, ~test) for b in (blocks[int(f)] if isinstance(blocks, dict) else blocks)])
        inner = folds[~test]
        m_cheap, _ = fit_logistic_cv(F[~test], table.scores[~test, cheap], inner)
        m_strong, _ = fit_logistic_cv(F[~test], table.scores[~test, strong], inner)
        p_cheap[test], p_strong[test] = m_cheap.predict(F[test]), m_strong.predict(F[test])
        if prior is not None:
            m = np.clip(prior[int(f)][:, cheap], 1e-3, 1 - 1e-3)
            fitted = m_cheap.predict(F[~test])
            residuals[int(f)] = (fitted - m[~test]) / np.sqrt(m[~test] * (1 - m[~test]))
    return VerifierOutput(name, p_cheap, p_strong, outer, residuals or None)


#: embedding blocks are reduced to this many principal components (fitted on the training rows):
#: a logistic model on 2 x 384 raw dimensions fits ten times slower for no better AUROC
EMBED_COMPONENTS = 64


def _reduce(block: np.ndarray, train: np.ndarray) -> np.ndarray:
    """An embedding block (wider than EMBED_COMPONENTS) projected on its training rows' top components."""
    if block.shape[1] <= EMBED_COMPONENTS:
        return block
    mean = block[train].mean(axis=0)
    _, _, vt = np.linalg.svd(block[train] - mean, full_matrices=False)
    return (block - mean) @ vt[:EMBED_COMPONENTS].T


def auroc(score: np.ndarray, label: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None without both classes."""
    label = np.asarray(label, dtype=bool)
    pos, neg = int(label.sum()), int((~label).sum())
    if not pos or not neg:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = np.asarray(score)[order]
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


# -- policies ------------------------------------------------------------------------------------
def _outcomes(table: RoutingTable, cheap: int, strong: int, direct: np.ndarray,
              escalate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean cost, mean quality) per operating point; ``direct``/``escalate`` are (points, n) bools."""
    s, c = table.scores, table.costs
    q = np.where(direct | escalate, s[:, strong], s[:, cheap])
    cost = np.where(direct, c[:, strong], c[:, cheap] + np.where(escalate, c[:, strong], 0.0))
    return cost.mean(axis=1), q.mean(axis=1)


def threshold_policy(v: VerifierOutput, table: RoutingTable, cheap: int, strong: int) -> M.Frontier:
    thresholds = np.concatenate([np.unique(v.p_cheap), [np.inf]])
    escalate = v.p_cheap[None, :] < thresholds[:, None]
    cost, q = _outcomes(table, cheap, strong, np.zeros_like(escalate), escalate)
    return M.Frontier(cost, q, thresholds)


def gain_policy(v: VerifierOutput, table: RoutingTable, cheap: int, strong: int,
                grid: np.ndarray, routing: bool = False, folds: np.ndarray | None = None) -> M.Frontier:
    c_s, c_c = table.costs[:, strong], table.costs[:, cheap]
    lam = grid[:, None]
    escalate = (v.p_strong - v.p_cheap)[None, :] > lam * c_s[None, :]
    direct = np.zeros_like(escalate)
    if routing:
        direct = _direct_choice(v, table, cheap, strong, lam, c_s, c_c, folds)
        escalate &= ~direct
    cost, q = _outcomes(table, cheap, strong, direct, escalate)
    return M.Frontier(cost, q, grid)


def _direct_choice(v, table, cheap, strong, lam, c_s, c_c, folds) -> np.ndarray:
    """Where going straight to the strong model beats trying the cheap one first (see module doc)."""
    direct = np.zeros((len(lam), len(table)), dtype=bool)
    qs_prior = np.clip(v.prior[:, strong], 0.0, 1.0)  # all that is known of the strong model before a call
    for f, z in (v.residual_z or {}).items():
        rows = folds == f
        m = np.clip(v.prior[rows, cheap], 1e-3, 1 - 1e-3)
        zq = np.quantile(z, np.linspace(0.01, 0.99, 41))
        p = np.clip(m[:, None] + zq[None, :] * np.sqrt(m * (1 - m))[:, None], 0.0, 1.0)  # (r, 41)
        strong_value = qs_prior[rows][None, :] - lam * c_s[rows][None, :]  # (L, r)
        try_value = np.maximum(p[None, :, :], strong_value[:, :, None]).mean(axis=2) - lam * c_c[rows][None, :]
        direct[:, rows] = strong_value > try_value
    return direct


def oracle_cascade(table: RoutingTable, cheap: int, strong: int) -> M.Frontier:
    """A perfect verifier: escalate only prompts where the strong model does better, most gain per
    dollar first."""
    gain = table.scores[:, strong] - table.scores[:, cheap]
    ratio = np.where(gain > 0, gain / np.maximum(table.costs[:, strong], 1e-12), -np.inf)
    thresholds = np.concatenate([[-np.inf], np.unique(ratio[gain > 0])[::-1], [np.inf]])
    escalate = (ratio[None, :] >= thresholds[:, None]) & (gain[None, :] > 0)
    cost, q = _outcomes(table, cheap, strong, np.zeros_like(escalate), escalate)
    return M.Frontier(cost, q, thresholds)


# -- the scenario --------------------------------------------------------------------------------
def run_cascade(table: RoutingTable, X: np.ndarray, answers: dict[str, list[str]], router_names: list[str],
                combine_with: list[str], seed: int = 0, n_folds: int = 5, cache_dir: str | None = None,
                backend: str = "torch", answer_embeddings: np.ndarray | None = None,
                plot_path: str | Path | None = None, rows_path: str | Path | None = None) -> dict[str, Any]:
    """Every pre-generation router and every cascade (verifier x policy) on the same folds and metrics."""
    cheap, strong = cascade_pair(table, answers)
    names = list(dict.fromkeys(router_names + combine_with))
    report = evaluate(table, X, names, n_folds=n_folds, seed=seed, cache_dir=cache_dir)
    base, grid, single = report.base, report.cost_weights, report.single
    oracle_auc = report.oracle.metrics["auc"]
    folds = fold_ids(table, n_folds, seed)
    cheap_answers = answers[table.models[cheap]]
    log(f"cascade {table.models[cheap]} -> {table.models[strong]}: answer features and embeddings")
    F = feature_matrix(table.prompts, cheap_answers)
    A = embed_texts(cheap_answers, backend) if answer_embeddings is None else answer_embeddings
    verifiers = [cross_fit_verifier("features", [F], table, folds, cheap, strong),
                 cross_fit_verifier("minilm+features", [F, A, X], table, folds, cheap, strong)]
    for name in combine_with:
        r = report.routers.get(name)
        if r is None or r.pred is None:
            continue
        log(f"  stacking {name}'s prompt-level estimates (inner cross-validation)")
        inner = stacked_router_scores(name, X, table, folds, seed, r.pred)
        for label, extra in (("features", []), ("minilm+features", [A, X])):
            blocks = {f: [F, *extra, _logit(np.clip(p[:, [cheap, strong]], 0, 1))] for f, p in inner.items()}
            verifiers.append(cross_fit_verifier(f"{name}+{label}", blocks, table, folds, cheap, strong,
                                                prior=inner, outer=r.pred))
    # cascade routing with another router's prompt-level estimates before the call: only its
    # out-of-fold predictions for the test rows are used (the residual spread comes from the stacked
    # verifier's training rows), so any router can sit in front without inner cross-validation
    stacked = [v for v in verifiers if v.residual_z]
    for name, r in report.routers.items():
        if r.pred is None or name in combine_with or _is_baseline(name):
            continue
        for v in stacked[:1]:
            verifiers.append(VerifierOutput(f"{v.name}, prior {name}", v.p_cheap, v.p_strong, r.pred, v.residual_z))
    label = table.scores[:, cheap] >= 0.5
    cascades: dict[str, dict[str, Any]] = {}
    curves: dict[str, M.Frontier] = {}
    for v in verifiers:
        fronts = {}
        if ", prior " not in v.name:  # same verifier as its stacked original: only the routing differs
            fronts = {"threshold": threshold_policy(v, table, cheap, strong),
                      "gain": gain_policy(v, table, cheap, strong, grid)}
        if v.prior is not None:
            fronts["routing"] = gain_policy(v, table, cheap, strong, grid, routing=True, folds=folds)
        for policy, front in fronts.items():
            curves[f"cascade[{policy}] {v.name}"] = front
            cascades[f"cascade[{policy}] {v.name}"] = {
                **_metrics(front, base, single["auc"], oracle_auc), "verifier": v.name, "policy": policy,
                "verifier_auroc": auroc(v.p_cheap, label)}
    curves["cascade[oracle verifier]"] = oracle_cascade(table, cheap, strong)
    cascades["cascade[oracle verifier]"] = {**_metrics(curves["cascade[oracle verifier]"], base, single["auc"],
                                                       oracle_auc), "verifier": "oracle", "policy": "oracle"}
    routers = {name: {**{k: r.metrics.get(k) for k in ("auc", "gap_closed", "max_quality", "cost_to_match_best")},
                      "cheap_right_auroc": auroc(r.pred[:, cheap], label) if r.pred is not None else None,
                      "error": r.error}
               for name, r in report.routers.items() if name in router_names}
    best_router = max((n for n in routers if routers[n]["auc"] is not None), key=lambda n: routers[n]["auc"],
                      default=None)
    best_cascade = max(cascades, key=lambda n: cascades[n]["auc"] if n != "cascade[oracle verifier]" else -1)
    if plot_path:
        plot_cascade(report, curves, best_router, best_cascade, plot_path)
    if rows_path:  # out-of-fold (confidence, correct) of the features-only verifier: what train-verifier fits
        write_rows(rows_path, verifiers[0].p_cheap, table.scores[:, cheap])
    return _clean_json({
        "scenario": "cascade", "table": table.name, "n_prompts": len(table),
        "tiers": [table.models[cheap], table.models[strong]],
        "protocol": {"folds": n_folds, "seed": seed, "pooled_out_of_fold": True,
                     "verifier_label": "cheap model's score >= 0.5"},
        "feature_names": list(FEATURE_NAMES),
        "baselines": {"single_model_frontier_auc": single["auc"], "oracle_auc": oracle_auc,
                      "best_single": {"model": base.models[base.best], "quality": base.best_quality,
                                      "cost": base.best_cost},
                      "cheap_model_accuracy": float(label.mean())},
        "routers": routers, "cascades": cascades,
        "best_router": best_router, "best_cascade": best_cascade,
    })


def _metrics(front: M.Frontier, base: M.Baselines, single_auc: float, oracle_auc: float) -> dict[str, Any]:
    out = M.frontier_metrics(front, base)
    out["gap_closed"] = M.gap_closed(out["auc"], single_auc, oracle_auc)
    return {k: out[k] for k in ("auc", "gap_closed", "max_quality", "cost_to_match_best")}


def _clean_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return round(float(value), 6) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def cascade_markdown(result: dict[str, Any]) -> str:
    """The scenario's report: pre-generation routers and cascades in one table."""
    b = result["baselines"]
    lines = [f"# Cascade: `{result['table']}`\n",
             f"{result['n_prompts']} prompts; tiers {' -> '.join(result['tiers'])}; "
             f"{result['protocol']['folds']}-fold out-of-fold. Single-model frontier auc "
             f"{b['single_model_frontier_auc']}, oracle {b['oracle_auc']}; cheap model right on "
             f"{b['cheap_model_accuracy']:.3f} of prompts.\n",
             "| policy | auc | gap closed | max quality | cost to match best | AUROC cheap right |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, r in sorted(result["routers"].items(), key=lambda kv: -(kv[1]["auc"] or 0)):
        lines.append(f"| router {name} | {r['auc']} | {r['gap_closed']} | {r['max_quality']} | "
                     f"{r['cost_to_match_best']} | {r['cheap_right_auroc']} |")
    for name, r in sorted(result["cascades"].items(), key=lambda kv: -(kv[1]["auc"] or 0)):
        lines.append(f"| {name} | {r['auc']} | {r['gap_closed']} | {r['max_quality']} | "
                     f"{r['cost_to_match_best']} | {r.get('verifier_auroc', '')} |")
    lines.append(f"\nBest pre-generation router: **{result['best_router']}**; best cascade: "
                 f"**{result['best_cascade']}**.")
    return "\n".join(lines) + "\n"


def plot_cascade(report, curves: dict[str, M.Frontier], best_router: str | None, best_cascade: str,
                 path: str | Path) -> None:
    """Frontiers of every pre-generation router (thin), the best cascade variants and the oracle cascade."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eval.report import _extend, _step_xy

    base = report.base
    fig, ax = plt.subplots(figsize=(10, 6), dpi=100)
    ax.axvspan(base.c_min, base.c_max, color="0.94", zorder=0, label="auc cost range")
    for name, r in report.routers.items():
        if r.frontier is None or _is_baseline(name):
            continue
        x, y = _extend(*_step_xy(r.frontier), base.c_max)
        ax.step(x, y, where="post", lw=2.2 if name == best_router else 0.9, alpha=1 if name == best_router else 0.5,
                label=f"router {name} (auc {r.metrics['auc']:.3f})")
    policies = [best_cascade] + [n for n in curves if n.startswith("cascade[threshold]") and "+" not in n][:1]
    for name in policies + ["cascade[oracle verifier]"]:
        x, y = _extend(*_step_xy(curves[name]), base.c_max)
        front_auc = M.auc(curves[name].cost, curves[name].quality, base.c_min, base.c_max)
        ax.step(x, y, where="post", lw=2.2, ls="--" if "oracle" in name else "-", label=f"{name} (auc {front_auc:.3f})")
    ax.scatter(base.model_cost, base.model_quality, color="0.2", s=30, zorder=4, label="single models")
    ax.set_xscale("log")
    ax.set_xlabel("mean cost per prompt (USD, log scale)")
    ax.set_ylabel("mean quality")
    ax.set_title(f"{report.table.name}: cascade vs pre-generation routers (5-fold out-of-fold)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_rows(path: str | Path, confidence: np.ndarray, score: np.ndarray) -> None:
    """A calibration CSV for a cascade profile's ``calibrate: {rows: ...}`` (confidence, correct)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["confidence", "correct"])
        writer.writerows([f"{c:.6f}", f"{y:.6g}"] for c, y in zip(confidence, score))
