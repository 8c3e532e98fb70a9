"""The router interface (scikit-learn etiquette) shared by every routing algorithm.

A router maps prompt embeddings ``X`` (n, d), L2-normalised float32, to estimated quality in [0, 1]
per expert ``(n, n_experts)``. ``__init__`` only stores hyperparameters; fitted state ends in ``_``.
Persisting is by arrays only (``state_arrays`` / ``from_state``) so that loading an artifact never
executes code from it.
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np


class RouterError(ValueError):
    """Raised for invalid router input, hyperparameters or artifacts."""


class Router(ABC):
    """Base class for every router.

    Subclasses set ``router_type`` (the registry name), implement ``_fit`` and ``predict_scores``,
    and list the array attributes that make up their fitted state in ``state_attrs``.
    """

    router_type: ClassVar[str] = "base"
    #: names of fitted attributes (ending in ``_``) saved as arrays in the artifact
    state_attrs: ClassVar[tuple[str, ...]] = ()

    # -- declared abilities ------------------------------------------------------------------
    # What callers may ask of a router beyond fit / predict_scores. Every router declares them here
    # (a new router gets these defaults: a trained, deterministic, greedy scorer); callers read the
    # flags and never probe for methods. tests/routers/test_abilities.py checks that each registered
    # router's flags match the methods it defines.
    #: needs no training data: ``from_experts`` builds it from experts.yaml's priors and prices,
    #: and its scores do not depend on the prompt (the gateway does not embed it)
    baseline: ClassVar[bool] = False
    #: its scores are a seeded random draw from its input (``random``): the gateway hands it a vector
    #: drawn from the request id, so every request gets its own draw and a replay the same one
    stochastic: ClassVar[bool] = False
    #: ``choose(x, request_id, cost, cost_weight, eligible) -> (index, propensity)``: it picks (and
    #: explores) for itself; the gateway logs the propensity of its pick
    chooses: ClassVar[bool] = False
    #: ``action_probabilities(X, cost, cost_weight) -> (n, k)``: the distribution its choice is drawn
    #: from (off-policy evaluation); without it a router is taken to pick its best utility greedily
    gives_probabilities: ClassVar[bool] = False
    #: ``partial_fit(X, actions, rewards, propensities)``: learns from feedback row by row
    learns_online: ClassVar[bool] = False
    #: the fitted arrays ``partial_fit`` only adds to, so replicas can share updates as summed deltas
    online_stats: ClassVar[tuple[str, ...]] = ()
    #: ``fit_logged(X, actions, rewards, propensities, experts)``: fits from logged choices alone
    learns_from_logs: ClassVar[bool] = False
    #: ``add_expert(name, X_probe, y_probe)``: onboards a new expert without refitting the others
    grows_experts: ClassVar[bool] = False
    #: ``fit(..., domains=labels)``: takes one domain label per training prompt
    takes_domains: ClassVar[bool] = False
    #: ``neighbours(X) -> (indices, similarities)`` into its training rows, whose labels are ``Y_``
    keeps_neighbours: ClassVar[bool] = False
    #: ``predict_scores`` scores each row on its own and a batch of rows costs much less than the rows
    #: one by one (kNN: one pass over the training matrix), so the gateway batches concurrent requests
    #: (router_gateway/routing/score_batcher.py). Not an ability: it changes cost, never scores.
    batches_scores: ClassVar[bool] = False

    ABILITIES: ClassVar[tuple[str, ...]] = (
        "baseline", "stochastic", "chooses", "gives_probabilities", "learns_online", "learns_from_logs",
        "grows_experts", "takes_domains", "keeps_neighbours")

    @classmethod
    def abilities(cls) -> dict[str, bool]:
        """Every declared ability flag of this router class."""
        return {name: bool(getattr(cls, name)) for name in cls.ABILITIES}

    @classmethod
    def from_experts(cls, experts: list[str], priors: list[float], prices: list[float], n_features: int,
                     **params: Any) -> "Router":
        """A baseline built from per-expert prior quality and price (USD per token pair, any scale):
        no training data. Only ``baseline`` routers can; the others need an artifact."""
        raise RouterError(f"{cls.router_type!r} is a trained router: it needs an artifact")

    # -- hyperparameters -------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self" and sig.parameters[p].kind
                not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as given to ``__init__`` (JSON-serialisable)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "Router":
        """Set hyperparameters; unknown names are an error."""
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise RouterError(f"{type(self).__name__} has no hyperparameter {key!r}")
            setattr(self, key, value)
        return self

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, X: np.ndarray, Y: np.ndarray, cost: np.ndarray | None = None,
            experts: list[str] | None = None) -> "Router":
        """Fit on embeddings ``X`` (n, d) and observed quality ``Y`` (n, k), NaN where untried.

        ``cost`` is (n, k) USD per prompt and expert (NaN allowed), or None. ``experts`` names the
        columns; defaults to ``expert_0..k-1``.
        """
        X, Y = check_xy(X, Y)
        if cost is not None:
            cost = np.asarray(cost, dtype=np.float64)
            if cost.shape != Y.shape:
                raise RouterError(f"cost has shape {cost.shape}, expected {Y.shape}")
        self.experts_ = list(experts) if experts is not None else [f"expert_{i}" for i in range(Y.shape[1])]
        if len(self.experts_) != Y.shape[1]:
            raise RouterError(f"{len(self.experts_)} expert names for {Y.shape[1]} columns")
        self.n_features_in_ = X.shape[1]
        self._fit(X, Y, cost)
        return self

    @abstractmethod
    def _fit(self, X: np.ndarray, Y: np.ndarray, cost: np.ndarray | None) -> None:
        """Learn from validated arrays (``experts_`` and ``n_features_in_`` are already set)."""

    @abstractmethod
    def predict_scores(self, X: np.ndarray) -> np.ndarray:
        """Estimated quality in [0, 1], shape (n, n_experts)."""

    # -- helpers ---------------------------------------------------------------------------
    def check_fitted(self) -> None:
        if not hasattr(self, "experts_"):
            raise RouterError(f"{type(self).__name__} is not fitted")

    def check_X(self, X: np.ndarray) -> np.ndarray:
        self.check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise RouterError(f"X has shape {X.shape}, expected (n, {self.n_features_in_})")
        return X

    # -- persistence (arrays only) ---------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Fitted state as named numpy arrays (what an artifact stores)."""
        self.check_fitted()
        return {name: np.asarray(getattr(self, name)) for name in self.state_attrs}

    @classmethod
    def from_state(cls, params: dict[str, Any], experts: list[str], n_features: int,
                   arrays: dict[str, np.ndarray]) -> "Router":
        """Rebuild a fitted router from hyperparameters and arrays, without executing stored code."""
        router = cls(**params)
        router.experts_ = list(experts)
        router.n_features_in_ = int(n_features)
        missing = [name for name in cls.state_attrs if name not in arrays]
        if missing:
            raise RouterError(f"artifact for {cls.router_type} lacks arrays {missing}")
        for name in cls.state_attrs:
            setattr(router, name, arrays[name])
        router._after_load()
        return router

    def _after_load(self) -> None:
        """Hook for routers that derive caches from their arrays after loading."""


def check_xy(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate training arrays: 2-D, same length, finite X, Y in [0, 1] or NaN."""
    X = np.asarray(X, dtype=np.float32)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2:
        raise RouterError(f"X and Y must be 2-D, got {X.shape} and {Y.shape}")
    if X.shape[0] != Y.shape[0]:
        raise RouterError(f"X has {X.shape[0]} rows, Y has {Y.shape[0]}")
    if X.shape[0] == 0:
        raise RouterError("no training rows")
    if not np.all(np.isfinite(X)):
        raise RouterError("X contains NaN or inf")
    observed = Y[~np.isnan(Y)]
    if observed.size and (observed.min() < 0 or observed.max() > 1):
        raise RouterError("Y must be in [0, 1] (NaN where an expert was not tried)")
    return X, Y
