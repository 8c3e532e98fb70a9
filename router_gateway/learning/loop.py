"""Retrain -> gate -> promote: the part of the learning loop that turns labels into a live router.

``LearningLoop`` is driven by whoever collects labels (the gateway's shadow runner, or the
simulation in eval.learning_sim): ``labels_added(n)`` after each shadowed prompt, ``due()`` to ask
whether to retrain now, ``retrain()`` to cross-fit a candidate on the labels, gate it against the
live router on prompts neither was trained on, and hand it to the ``Promoter`` when it passes.
The latest candidate is kept (``candidate``) whether promoted or not: the shadow policy uses it to
decide which prompts and experts are worth labelling next.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol

import numpy as np

from router_gateway.learning.gate import GateResult, gate, gate_weights
from router_gateway.learning.ope_check import ope_check
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
    canary: str | None = None  # the candidate went on trial instead (promote.canary)

    def as_dict(self) -> dict[str, Any]:
        return {"labelled": self.labelled, "trained_on": self.trained_on, "gate": self.gate.as_dict(),
                "promoted": self.promoted, "canary": self.canary}


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
        self.live_trained: set[str] = set()  # prompt digests the live router was trained on
        self.passed_streak = 0  # consecutive retrains whose candidate passed the gate (gate.confirm)
        self.canary_trained: set[str] = set()  # prompt digests the canary on trial was trained on

    def labels_added(self, prompts: int = 1) -> None:
        self.new_labels += prompts
        self.total_labels += prompts

    def due(self) -> bool:
        r = self.settings.retrain
        if self.total_labels < r.min_labels or self.new_labels == 0:
            return False
        return self.new_labels >= r.every_labels or self.clock() - self.last_retrain >= r.every_minutes * 60

    def retrain(self, promote: bool | None = None) -> RetrainOutcome:
        """Cross-fit the candidate, gate it against the live router, promote the refit on all labels.

        Every labelled prompt is a test prompt once: the labels are split into ``retrain.folds``
        folds by prompt digest, and each fold is predicted by a candidate trained on the others.
        The gate compares those predictions with the live router's on the prompts the live router
        was not trained on (all of them while the configured baseline runs), so neither side is
        judged on its own training rows. When it passes, the candidate refit on every label is
        promoted: the gate validated the recipe on these labels; the refit uses all of them.
        """
        self.new_labels, self.last_retrain = 0, self.clock()
        data = self.store.training_set(self.experts)
        r, g = self.settings.retrain, self.settings.promote.gate
        if len(data.digests) < 2 or np.all(np.isnan(data.Y)):
            return self._record(RetrainOutcome(len(data.digests), 0, _no_gate("not enough labels yet"), None, None))
        folds = np.array([int(d[:8], 16) % r.folds for d in data.digests])
        cv_pred = self._cross_fit(data.X, data.Y, folds)
        rng = np.random.default_rng(len(data.digests))  # the controls: same recipe, labels shuffled
        null_preds = [self._cross_fit(data.X, data.Y[rng.permutation(len(data.digests))], folds)
                      for _ in range(g.controls)]
        live_pred = self._live_out_of_sample(data, folds)
        rows = ~np.isnan(cv_pred).any(axis=1) & ~np.isnan(live_pred).any(axis=1)
        for p in null_preds:  # the same prompts for every router, or the comparison is not paired
            rows &= ~np.isnan(p).any(axis=1)
        refresh = self._is_refresh(data.digests)
        result = gate(live_pred[rows], cv_pred[rows], data.Y[rows], self.norm_cost, g.min_gain,
                      g.refresh_z if refresh else g.z, g.min_rows, null_preds=[p[rows] for p in null_preds],
                      null_z_min=g.null_z, not_worse=refresh, weights=gate_weights(g.max_weight, self.cost_weight),
                      signal=g.signal, residual_z_min=g.residual_null_z)
        result = self._with_ope(result, data, cv_pred, live_pred)
        router = build_candidate(r.router, r.params, data.X, data.Y, self.experts)
        self.candidate = router
        by_hand = promote is not None
        promote = self.settings.promote.auto if promote is None else promote
        self.passed_streak = self.passed_streak + 1 if result.passed else 0
        info = {"labelled": len(data.digests), "trained_on": len(data.digests), "gate": result.as_dict(),
                "router": r.router, "params": r.params, "passed_in_a_row": self.passed_streak}
        promoted = canary = None
        on_trial = getattr(self.promoter, "canary", None)
        if result.passed and promote and (by_hand or refresh or self.passed_streak >= g.confirm):
            self.passed_streak = 0
            if by_hand or self.settings.promote.canary.share <= 0:
                promoted = self.promoter.promote(router, info)
                self.live_trained = set(data.digests)
            elif not on_trial:  # automatic, with a canary: on trial first (learning.canary)
                canary = self.promoter.start_canary(router, info)
                self.canary_trained = set(data.digests)
        kind = "promotion" if promoted else "canary" if canary else "candidate"
        self.store.add_event(kind, {**info, "artifact": promoted or canary,
                                    **({"trained_digests": data.digests} if promoted or canary else {})},
                             ts=self.clock())
        return self._record(RetrainOutcome(len(data.digests), len(data.digests), result, promoted, router, canary))

    def _with_ope(self, result: GateResult, data, cv_pred: np.ndarray, live_pred: np.ndarray) -> GateResult:
        """The logged-traffic check (learning.ope_check): a veto where the logs support one."""
        propensity = self.store.logged_propensities(data.digests)
        logged = np.array([self.experts.index(e) if e in self.experts else -1 for e in data.live_expert])
        ope = ope_check(data.Y, logged, propensity, cv_pred, live_pred, self.norm_cost, self.cost_weight,
                        self.settings.promote.gate.ope_min_ess)
        if ope is None:
            return result
        return replace(result, passed=result.passed and not ope.veto, reason=f"{result.reason}; {ope.reason}",
                       ope=ope.as_dict())

    def canary_ended(self, promoted: bool) -> None:
        """The canary went live (its training prompts are the live router's now) or was dropped."""
        if promoted:
            self.live_trained = set(self.canary_trained)
        self.canary_trained = set()

    def _is_refresh(self, digests: list[str]) -> bool:
        """Is the candidate the live learned router's recipe on a superset of its labels?

        Then the gate asks only that it is not worse (``gate.refresh_z``): the first promotion
        already showed, against the configured router, that this recipe learns from these grades,
        and the same recipe with more labels is expected to be at least as good. Requiring a
        significant gain each time would freeze the first promoted router, since the gate cannot
        resolve the small steps between successive refits. Off (``refresh_z`` unset) or after a
        revert to the configured router, every candidate must show a gain."""
        g = self.settings.promote.gate
        return (g.refresh_z is not None and bool(self.live_trained)
                and self.live_trained.issubset(digests)
                and getattr(self.promoter, "pointer", {}).get("current") is not None)

    def _live_out_of_sample(self, data, folds: np.ndarray) -> np.ndarray:
        """The live router's scores on every labelled prompt, never from a prompt it was trained on.

        On prompts it did not see: the live artifact's own scores. On the prompts it was trained on
        (after a promotion by this loop): its recipe cross-fitted on its own training labels, the same
        out-of-sample estimate the candidate gets. Without this the gate after a promotion could only
        use the prompts labelled since, a few dozen, and a better candidate would wait for many
        retrains (or pass on a lucky few rows)."""
        trained = np.array([d in self.live_trained for d in data.digests], dtype=bool)
        pred = np.full(data.Y.shape, np.nan)
        if (~trained).any():
            pred[~trained] = self.promoter.live_scores(data.X[~trained])
        if trained.any():
            pred[trained] = self._cross_fit(data.X[trained], data.Y[trained], folds[trained])
        return pred

    def _cross_fit(self, X: np.ndarray, Y: np.ndarray, folds: np.ndarray) -> np.ndarray:
        """Each fold's scores from a candidate trained on the other folds (NaN where none could be)."""
        r = self.settings.retrain
        pred = np.full(Y.shape, np.nan)
        for f in np.unique(folds):
            test = folds == f
            if (~test).sum() == 0 or np.all(np.isnan(Y[~test])):
                continue
            pred[test] = build_candidate(r.router, r.params, X[~test], Y[~test], self.experts).predict_scores(X[test])
        return pred

    def _record(self, outcome: RetrainOutcome) -> RetrainOutcome:
        self.last_outcome = outcome
        return outcome

    def restore_live_trained(self) -> None:
        """After a restart: the prompts the live artifact (and a canary on trial) were trained on, from
        their promotion or canary events."""
        pointer = getattr(self.promoter, "pointer", {})
        trained = {}
        for kind in ("promotion", "canary"):
            for event in self.store.events(kind, limit=1000):
                if event.get("trained_digests"):  # a promotion via the canary names its digests in the canary event
                    trained.setdefault(event.get("artifact"), set(event["trained_digests"]))
        self.live_trained = trained.get(pointer.get("current"), set()) if pointer.get("current") else set()
        self.canary_trained = trained.get(pointer.get("canary"), set()) if pointer.get("canary") else set()


def _no_gate(reason: str) -> GateResult:
    nan = float("nan")
    return GateResult(False, 0, nan, nan, nan, nan, reason)
