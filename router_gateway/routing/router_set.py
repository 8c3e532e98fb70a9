"""The routers named in experts.yaml, built once per config version and swapped as a whole.

Every type is looked up in the router registry (routers/registry.py). Baselines (the ``baseline``
flag) are built from experts.yaml's priors and prices; trained routers are loaded from artifact
directories and refused when their embedder or experts do not match what the gateway runs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from router_gateway.domain.config import GatewayConfig, RouterSpec
from router_gateway.domain.config_yaml import ConfigError
from router_gateway.embedding.base import EmbedderInfo
from routers.artifact import load_artifact
from routers.base import Router, RouterError
from routers.registry import checked_class, router_class

log = logging.getLogger("router_gateway.routers")


@dataclass
class LoadedRouter:
    """A router ready to score prompts, with what the gateway needs to know about it."""

    name: str
    router: Router
    needs_embedding: bool
    meta: dict[str, Any] = field(default_factory=dict)
    #: column of each config expert in the router's scores, or -1 if the router does not know it
    columns: dict[str, int] = field(default_factory=dict)


def build_router_set(config: GatewayConfig, embedder_info: EmbedderInfo | None) -> dict[str, LoadedRouter]:
    """Build every router in the config; raises ConfigError naming the router on any mismatch."""
    out: dict[str, LoadedRouter] = {}
    for name, spec in config.routers.items():
        try:
            out[name] = _build_one(name, spec, config, embedder_info)
        except (RouterError, OSError, ValueError) as exc:
            raise ConfigError(f"routers.{name}: {exc}") from None
    return out


def _build_one(name: str, spec: RouterSpec, config: GatewayConfig,
               embedder_info: EmbedderInfo | None) -> LoadedRouter:
    if not router_class(spec.type).baseline:
        return _load_trained(name, spec, config, embedder_info)
    experts = list(config.experts)
    priors = [e.prior_quality for e in config.experts.values()]
    prices = [e.price.input_per_mtok + e.price.output_per_mtok for e in config.experts.values()]
    params = dict(spec.params, expert=spec.expert) if spec.expert is not None else dict(spec.params)
    router = checked_class(spec.type, params).from_experts(experts, priors, prices,
                                                           embedder_info.dim if embedder_info else 1, **params)
    return LoadedRouter(name, router, needs_embedding=False, meta={"router_type": spec.type},
                        columns={e: i for i, e in enumerate(experts)})


def _load_trained(name: str, spec: RouterSpec, config: GatewayConfig,
                  embedder_info: EmbedderInfo | None) -> LoadedRouter:
    router, meta = load_artifact(spec.artifact)
    if meta["router_type"] != spec.type:
        raise RouterError(f"artifact {spec.artifact} holds a {meta['router_type']!r} router, config says {spec.type!r}")
    check_artifact_embedder(meta, embedder_info)
    unknown = [e for e in meta["experts"] if e not in config.experts]
    if unknown:
        raise RouterError(f"artifact {spec.artifact} scores experts not in experts.yaml: {unknown}")
    missing = [e for e in config.experts if e not in meta["experts"]]
    if missing:
        log.warning("router %s does not know experts %s: they are scored by their prior_quality", name, missing)
    if spec.params:
        router.set_params(**spec.params)
    columns = {e: meta["experts"].index(e) if e in meta["experts"] else -1 for e in config.experts}
    return LoadedRouter(name, router, needs_embedding=True, meta=meta, columns=columns)


def check_artifact_embedder(meta: dict[str, Any], info: EmbedderInfo | None) -> None:
    """Refuse an artifact trained on another embedding model or dimension."""
    trained = meta.get("embedder") or {}
    if info is None:
        raise RouterError("a trained router needs the prompt embedder, which is not configured")
    if trained.get("name") != info.name or int(trained.get("dim", -1)) != info.dim:
        raise RouterError(f"artifact was trained with embedder {trained.get('name')!r} (dim {trained.get('dim')}), "
                          f"the gateway runs {info.name!r} (dim {info.dim})")


def score_experts(loaded: LoadedRouter, x: np.ndarray, config: GatewayConfig) -> np.ndarray:
    """Scores for the config's experts in config order (unknown experts get their prior)."""
    return score_rows(loaded, x[None, :], config)[0]


def score_rows(loaded: LoadedRouter, X: np.ndarray, config: GatewayConfig) -> np.ndarray:
    """``score_experts`` for a batch of prompts (n, d) -> (n, experts in config order)."""
    raw = loaded.router.predict_scores(X)
    out = np.empty((raw.shape[0], len(config.experts)))
    for i, (name, expert) in enumerate(config.experts.items()):
        col = loaded.columns.get(name, -1)
        out[:, i] = raw[:, col] if col >= 0 else expert.prior_quality
    return np.clip(out, 0.0, 1.0)
