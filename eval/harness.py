"""Cross-validation harness: every router on the same folds and the same cached embeddings.

Protocol. Folds come from the table's ``fold`` column (0-4, a hash of the prompt), so every router
and every tool is scored on the same splits; with ``--folds N`` other than the column's count, folds
are a seeded permutation instead. For each router and fold the router is fitted on the other folds
and predicts scores for the held-out fold; the out-of-fold predictions are assembled into one
(n_prompts, n_models) matrix and every metric is computed once on that pooled matrix (not averaged
per fold): a frontier needs many prompts per operating point, and pooling gives every router exactly
the prompts and costs of the single-model baselines. A router that fails to fit or predict is
reported with its error; the run goes on. Routers that declare ``takes_domains`` (domain,
stacked) get the training prompts' ``task`` labels; at prediction time they see embeddings only.
"""
from __future__ import annotations

import inspect
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from eval import metrics as M
from routers.data import RoutingTable
from routers.registry import available_routers, make_router, router_class

#: registered routers that are not evaluated with ``--routers all``: ``fixed`` needs an expert
#: name and is the single-model baseline that every report already shows.
SKIP_IN_ALL = {"fixed"}

#: metric keys every router entry carries (None where not applicable), so JSON readers can rely on them
ROUTER_KEYS = ("auc", "max_quality", "quality_at_best_cost", "cost_to_match_best", "gap_closed", "aiq",
               "apgr", "cpt50", "cpt80", "route_ms", "fit_s", "error")


def log(msg: str) -> None:
    """Progress on stderr."""
    print(f"[eval] {msg}", file=sys.stderr, flush=True)


@dataclass
class RouterResult:
    """One router's out-of-fold predictions, timings and metrics."""

    name: str
    pred: np.ndarray | None = None
    route_ms: float | None = None
    fit_s: float | None = None
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    frontier: M.Frontier | None = None
    choices: np.ndarray | None = None  # (n_cost_weights, n_prompts)


@dataclass
class TableReport:
    """Everything computed for one table: baselines, the oracle and every router."""

    table: RoutingTable
    base: M.Baselines
    cost_weights: np.ndarray
    single: dict[str, float]
    oracle: RouterResult
    routers: dict[str, RouterResult]
    folds: int
    seed: int
    sample_of: int | None = None  # the full table's size when a seeded sample was evaluated

    def to_json(self) -> dict[str, Any]:
        """The stable JSON shape other tools read."""
        base = self.base
        return {
            "table": self.table.name,
            "n_prompts": len(self.table),
            "models": list(self.table.models),
            "protocol": {"folds": self.folds, "seed": self.seed, "pooled_out_of_fold": True,
                         "sample_of": self.sample_of,
                         "n_cost_weights": int(len(self.cost_weights))},
            "routers": {name: {k: _clean(r.metrics.get(k)) for k in ROUTER_KEYS}
                        for name, r in self.routers.items()},
            "baselines": {
                "single_models": {m: {"cost": float(base.model_cost[i]), "quality": float(base.model_quality[i])}
                                  for i, m in enumerate(base.models)},
                "best_single": {"model": base.models[base.best], "cost": base.best_cost,
                                "quality": base.best_quality},
                "cost_range": {"c_min": base.c_min, "c_max": base.c_max},
                "single_model_frontier": {k: _clean(v) for k, v in self.single.items()},
                "oracle": {k: _clean(v) for k, v in self.oracle.metrics.items()},
            },
        }


def _clean(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    return value


# -- folds and routers ---------------------------------------------------------------------------
def fold_ids(table: RoutingTable, n_folds: int, seed: int) -> np.ndarray:
    """The table's fold column when it has ``n_folds`` folds, else a seeded permutation into n_folds."""
    folds = np.asarray(table.folds)
    if len(np.unique(folds)) == n_folds:
        return folds
    rng = np.random.default_rng(seed)
    return rng.permutation(len(table)) % n_folds


def resolve_routers(spec: str) -> list[str]:
    """``all`` or a comma-separated list of registered router names."""
    known = available_routers()
    if spec.strip() == "all":
        return [name for name in known if name not in SKIP_IN_ALL]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown router(s) {unknown}; registered: {', '.join(known)}")
    return names


def build_router(name: str, seed: int, params: dict[str, Any] | None = None):
    """Instantiate a router, passing the seed to whichever seed hyperparameter it has."""
    params = dict(params or {})
    accepted = set(inspect.signature(router_class(name).__init__).parameters)
    for key in ("seed", "random_state"):
        if key in accepted and key not in params:
            params[key] = seed
    return make_router(name, **params)


def _pred_cache_path(cache_dir, name, X, table, folds, seed, params) -> Path:
    """Where one router's out-of-fold predictions are cached: keyed by the data, folds, seed,
    hyperparameters and the source of the router's module (an edited router is recomputed)."""
    import hashlib
    import json

    cls = router_class(name)
    src = Path(inspect.getfile(cls)).read_bytes()
    h = hashlib.sha256()
    for part in (name, json.dumps(build_router(name, seed, params).get_params(), sort_keys=True, default=str),
                 str(seed), table.name):
        h.update(part.encode())
    for arr in (X, table.scores, table.costs, folds):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(src)
    return Path(cache_dir) / f"{table.name}-{name}-{h.hexdigest()[:16]}.npz"


def cross_val_predict(name: str, X: np.ndarray, table: RoutingTable, folds: np.ndarray, seed: int,
                      params: dict[str, Any] | None = None, cache_dir: str | None = None) -> RouterResult:
    """Out-of-fold predicted scores of one router; failures become ``error``.

    With ``cache_dir`` the predictions (and timings) are cached, so several processes can fill the
    cache for different routers in parallel and one final run assembles the report."""
    if cache_dir:
        path = _pred_cache_path(cache_dir, name, X, table, folds, seed, params)
        if path.exists():
            z = np.load(path)
            log(f"    {name}: out-of-fold predictions from {path}")
            return RouterResult(name, pred=z["pred"], route_ms=float(z["route_ms"]), fit_s=float(z["fit_s"]))
        result = cross_val_predict(name, X, table, folds, seed, params)
        if result.pred is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, pred=result.pred, route_ms=result.route_ms, fit_s=result.fit_s)
        return result
    result = RouterResult(name)
    pred = np.full(table.scores.shape, np.nan)
    fit_s = route_s = 0.0
    try:
        for f in np.unique(folds):
            test = folds == f
            router = build_router(name, seed, params)
            t0 = time.perf_counter()
            extra = {}
            if router.takes_domains:  # e.g. domain: task labels
                extra["domains"] = [t for t, tr in zip(table.tasks, ~test) if tr]
            router.fit(X[~test], table.scores[~test], cost=table.costs[~test], experts=table.models, **extra)
            t1 = time.perf_counter()
            scores = np.asarray(router.predict_scores(X[test]), dtype=np.float64)
            route_s += time.perf_counter() - t1
            fit_s += t1 - t0
            if scores.shape != (int(test.sum()), len(table.models)):
                raise ValueError(f"predict_scores returned shape {scores.shape}")
            pred[test] = scores
    except Exception as exc:  # a broken router is reported, not fatal
        result.error = f"{type(exc).__name__}: {exc}"
        log(f"{name}: FAILED ({result.error})")
        log("".join(traceback.format_exception(exc)[-3:]).rstrip())
        return result
    result.pred, result.fit_s, result.route_ms = pred, fit_s, 1000.0 * route_s / len(table)
    return result


# -- one table -----------------------------------------------------------------------------------
def evaluate(table: RoutingTable, X: np.ndarray, router_names: list[str], n_folds: int = 5, seed: int = 0,
             params: dict[str, dict[str, Any]] | None = None,
             on_router: Callable[[RouterResult], None] | None = None,
             cache_dir: str | None = None) -> TableReport:
    """Cross-validate every router on ``table`` with embeddings ``X`` and compute all metrics."""
    if X.shape[0] != len(table):
        raise ValueError(f"{X.shape[0]} embeddings for {len(table)} prompts")
    true, cost = table.scores, table.costs
    base = M.baselines(true, cost, table.models)
    grid = M.cost_weight_grid(cost)
    single = M.single_model_frontier(base)
    oracle = RouterResult("oracle")
    oracle.metrics, oracle.frontier, oracle.choices = M.oracle(true, cost, base, grid)
    oracle.metrics["gap_closed"] = 1.0
    folds = fold_ids(table, n_folds, seed)
    log(f"{table.name}: {len(table)} prompts, {len(table.models)} models, {len(np.unique(folds))} folds; "
        f"best single {base.models[base.best]} {base.best_quality:.3f}, oracle {oracle.metrics['max_quality']:.3f}")
    results: dict[str, RouterResult] = {}
    for i, name in enumerate(router_names, 1):
        log(f"[{i}/{len(router_names)}] {name}: cross-validating")
        r = cross_val_predict(name, X, table, folds, seed, (params or {}).get(name), cache_dir)
        if r.pred is not None:
            r.metrics, r.frontier, r.choices = M.evaluate_scores(
                r.pred, true, cost, base, grid, oracle.metrics["auc"], single["auc"])
            r.metrics.update(route_ms=r.route_ms, fit_s=r.fit_s)
            log(f"    {name}: auc {r.metrics['auc']:.4f}, max quality {r.metrics['max_quality']:.4f}, "
                f"fit {r.fit_s:.1f}s, route {r.route_ms:.3f} ms/prompt")
        else:
            r.metrics = {"error": r.error}
        results[name] = r
        if on_router:
            on_router(r)
    return TableReport(table, base, grid, single, oracle, results, n_folds, seed)


class _LazyTorchEmbedder:
    """The torch all-MiniLM-L6-v2 embedder, loaded only if a prompt is missing from the cache
    (loading torch and the model takes minutes on a busy 2-core machine; a cached table needs neither)."""

    def __init__(self):
        from router_gateway.embedding.base import DEFAULT_MODEL, EmbedderInfo
        self.info = EmbedderInfo(name=DEFAULT_MODEL, dim=384, backend="torch")
        self._real = None

    def embed(self, texts: list[str]) -> np.ndarray:
        if self._real is None:
            from router_gateway.embedding import make_embedder
            log("loading the embedding model")
            self._real = make_embedder("torch")
            if self._real.info != self.info:
                raise RuntimeError(f"embedder is {self._real.info}, expected {self.info}")
        return self._real.embed(texts)


def embed_table(table: RoutingTable, backend: str = "torch", rows: np.ndarray | None = None) -> np.ndarray:
    """Embeddings of the table's prompts (all-MiniLM-L6-v2), read from / written to the disk cache."""
    from router_gateway.embedding import make_embedder
    from router_gateway.embedding.disk_cache import embed_cached

    prompts = table.prompts if rows is None else [table.prompts[i] for i in rows]
    log(f"embedding {len(prompts)} prompts ({backend}; cached by prompt digest)")
    embedder = _LazyTorchEmbedder() if backend == "torch" else make_embedder(backend)
    return embed_cached(embedder, prompts)
