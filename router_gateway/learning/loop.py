"""Retrain -> gate -> promote: the part of the learning loop that turns labels into a live router.

``LearningLoop`` is driven by whoever collects labels (the gateway's shadow runner, or the
simulation in eval.learning_sim): ``labels_added(n)`` after each shadowed prompt, ``due()`` to ask
whether to retrain now, ``retrain()`` to fit a candidate on the training side of the labels, gate
it against the live router on the held-out side, and hand it to the ``Promoter`` when it passes.
The latest candidate is kept (``candidate``) whether promoted or not: the shadow policy uses it to
decide which prompts and experts are worth labelling next.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from router_gateway.learning.gate import GateResult, gate
from router_gateway.learning.settings import LearningSettings
from router_gateway.learning.store import LabelStore
from routers.base import Router
from routers.registry import make_router, router_class


class Promoter(Protocol):
    """Owns the live router of the learning profile."""

    def live_scores(self, X: np.ndarray) -> np.ndarray:
        """The live router's scores (n, n_experts) in the loop's expert order."""

    def promote(self, router: Router, info: dict[str, Any]) -> str:
        """Make ``router`` live (hot swap); returns the promoted artifact's path."""


@dataclass
class RetrainOutcome:
    labelled: int
    trained_on: int
    gate: GateResult
    promoted: str | None
    router: Router | None

    def as_dict(self) -> dict[str, Any]:
        return {"labelled": self.labelled, "trained_on": self.trained_on, "gate": self.gate.as_dict(),
                "promoted": self.promoted}


def build_candidate(router_type: str, params: dict[str, Any], X: np.ndarray, Y: np.ndarray,
                    experts: list[str], cost: np.ndarray | None = None) -> Router:
    """Fit a fresh router of ``router_type`` on partial labels (NaN = untried)."""
    params = dict(params)
    accepted = inspect.signature(router_class(router_type).__init__).parameters
    if router_type == "knn" and "k" in params:  # k above the number of rows is the global mean anyway
        params["k"] = int(max(1, min(int(params["k"]), X.shape[0])))
    router = make_router(router_type, **{k: v for k, v in params.items() if k in accepted})
    return router.fit(X, Y, cost=None if cost is None else np.where(np.isnan(cost), np.nanmean(cost), cost),
                      experts=experts)


class LearningLoop:
    """When to retrain, and what a retrain does (see module doc)."""

    def __init__(self, settings: LearningSettings, store: LabelStore, experts: list[str],
                 norm_cost: np.ndarray, cost_weight: float, promoter: Promoter,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.store = store
        self.experts = list(experts)
        self.norm_cost = np.asarray(norm_cost, dtype=np.float64)
        self.cost_weight = float(cost_weight)
        self.promoter = promoter
        self.clock = clock
        self.new_labels = 0
        self.total_labels = 0
        self.last_retrain = clock()
        self.candidate: Router | None = None
        self.last_outcome: RetrainOutcome | None = None

    def labels_added(self, prompts: int = 1) -> None:
        self.new_labels += prompts
        self.total_labels += prompts

    def due(self) -> bool:
        r = self.settings.retrain
        if self.total_labels < r.min_labels or self.new_labels == 0:
            return False
        return self.new_labels >= r.every_labels or self.clock() - self.last_retrain >= r.every_minutes * 60

    def retrain(self, promote: bool | None = None) -> RetrainOutcome:
        """Fit on the training side, gate on the held-out side, promote when it passes."""
        self.new_labels, self.last_retrain = 0, self.clock()
        data = self.store.training_set(self.experts)
        train, held = ~data.holdout, data.holdout
        g = self.settings.promote.gate
        if train.sum() == 0 or np.all(np.isnan(data.Y[train])):
            result = GateResult(False, int(held.sum()), float("nan"), float("nan"), float("nan"), float("nan"),
                                "no training labels yet")
            outcome = RetrainOutcome(len(data.digests), int(train.sum()), result, None, None)
            self.last_outcome = outcome
            return outcome
        r = self.settings.retrain
        router = build_candidate(r.router, r.params, data.X[train], data.Y[train], self.experts)
        self.candidate = router
        result = gate(self.promoter.live_scores(data.X[held]), router.predict_scores(data.X[held]),
                      data.Y[held], self.norm_cost, self.cost_weight, g.min_gain, g.z, g.min_rows)
        promote = self.settings.promote.auto if promote is None else promote
        promoted = None
        info = {"labelled": len(data.digests), "trained_on": int(train.sum()), "gate": result.as_dict(),
                "router": r.router, "params": r.params}
        if result.passed and promote:
            promoted = self.promoter.promote(router, info)
        self.store.add_event("promotion" if promoted else "candidate", {**info, "artifact": promoted},
                             ts=self.clock())
        outcome = RetrainOutcome(len(data.digests), int(train.sum()), result, promoted, router)
        self.last_outcome = outcome
        return outcome
