"""Fit a router on training data and write its artifact; the artifact compatibility check.

The artifact's meta records router type and hyperparameters (``save_artifact``), plus the source,
its sha256, the embedder, training metrics and the creation time.
"""
from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from router_gateway.embedding.base import EmbedderInfo
from router_gateway.training.data import TrainingData
from routers.base import Router, RouterError


def check_artifact_compatible(meta: dict[str, Any], embedder_info: EmbedderInfo | dict[str, Any],
                              expert_names: list[str]) -> None:
    """Refuse an artifact trained with another embedder, or naming experts the registry lacks.

    ``embedder_info``: an EmbedderInfo or its dict. Experts of the registry that the artifact does not
    know are fine (the router cannot score them: the gateway treats them as unscored).
    """
    info = embedder_info.as_dict() if isinstance(embedder_info, EmbedderInfo) else dict(embedder_info)
    trained = meta.get("embedder") or {}
    if trained.get("name") != info.get("name") or int(trained.get("dim", -1)) != int(info.get("dim", -2)):
        raise RouterError(
            f"artifact was trained with embedder {trained.get('name')!r} (dim {trained.get('dim')}), "
            f"the gateway runs {info.get('name')!r} (dim {info.get('dim')}): retrain the router "
            f"or configure the matching embedder")
    if int(meta.get("n_features", -1)) != int(info.get("dim", -2)):
        raise RouterError(f"artifact expects {meta.get('n_features')}-d embeddings, embedder gives {info.get('dim')}")
    missing = [e for e in meta.get("experts", []) if e not in set(expert_names)]
    if missing:
        raise RouterError(f"artifact routes to experts {missing} that experts.yaml does not define "
                          f"(defined: {', '.join(expert_names)}); add them or retrain without them")


def fit_router(router: Router, X: np.ndarray, data: TrainingData) -> Router:
    """Fit ``router`` on ``data``: logged choices go to ``fit_logged`` where the router declares it
    (``learns_from_logs``), a table's task labels to routers that take domains."""
    if data.actions is not None and router.learns_from_logs:
        props = np.where(np.isnan(data.propensities), 1.0, data.propensities)
        return router.fit_logged(X, data.actions, data.rewards, props, experts=data.experts)
    if data.domains is not None and router.takes_domains:
        return router.fit(X, data.Y, cost=data.cost, experts=data.experts, domains=data.domains)
    return router.fit(X, data.Y, cost=data.cost, experts=data.experts)


def training_metrics(router: Router, X: np.ndarray, data: TrainingData, fit_s: float) -> dict[str, Any]:
    """In-sample figures recorded in meta.json (for a sanity look, not for choosing routers)."""
    pred = router.predict_scores(X)
    seen = ~np.isnan(data.Y)
    mse = float(np.mean((pred[seen] - data.Y[seen]) ** 2)) if seen.any() else None
    return {"n_prompts": len(data.prompts), "n_labels": int(seen.sum()), "fit_seconds": round(fit_s, 3),
            "train_mse": mse, "mean_quality": [float(v) for v in np.nanmean(np.where(seen, data.Y, np.nan), axis=0)],
            "skipped": dict(data.skipped)}


def train_and_save(router: Router, X: np.ndarray, data: TrainingData, out: str | Path,
                   embedder_info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Fit and write the artifact; returns (directory, training metrics)."""
    from routers.artifact import save_artifact

    _log(f"fitting {router.router_type} on {len(data.prompts)} prompts x {len(data.experts)} experts")
    t0 = time.perf_counter()
    fit_router(router, X, data)
    metrics = training_metrics(router, X, data, time.perf_counter() - t0)
    extra = {"source": {"path": data.source, "sha256": data.digest,
                        "kind": "logs" if data.actions is not None else "table"},
             "data_sha256": data.digest, "training_metrics": metrics,
             "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = save_artifact(router, out, embedder=embedder_info, extra=extra)
    return path, metrics


def embed_prompts(prompts: list[str], backend: str = "auto"):
    """(embeddings, embedder info dict), cached on disk by prompt digest, with progress on stderr."""
    from router_gateway.embedding import make_embedder
    from router_gateway.embedding.disk_cache import embed_cached

    embedder = make_embedder(backend)
    _log(f"embedding {len(prompts)} prompts with {embedder.info.name} ({embedder.info.backend}; cached)")
    return embed_cached(embedder, prompts), embedder.info.as_dict()


def _log(msg: str) -> None:
    print(f"[train] {msg}", file=sys.stderr, flush=True)
