"""Stacked router: knn + cluster + domain (default bases), combined per expert by a logistic stacker learnt on
out-of-fold predictions inside the training data.

The base routers' hyperparameters are fixed (not tuned per table); the only thing learnt from the
table beyond the bases is the stacker: for each expert, ``sigmoid(w . logit(base scores) + c)``
fitted on inner cross-validation predictions (``inner_folds`` folds of the training rows), so
the combination weights are chosen by CV inside the training folds. The bases are then refitted
on all training rows. Arrays of every base are stored under ``<base>__<attr>``.
"""
from __future__ import annotations

import numpy as np

from routers._common import inner_folds
from routers.base import Router, RouterError
from routers.registry import make_router

_EPS = 1e-3


class StackedRouter(Router):
    """Per-expert logistic stack over base routers' predicted quality."""

    router_type = "stacked"
    state_attrs = ("stack_coef_",)
    takes_domains = True  # handed to a ``domain`` base

    def __init__(self, bases: str = "knn,cluster,domain", knn_k: int = 40, inner_folds: int = 3,
                 stack_C: float = 10.0, seed: int = 0):
        self.bases = bases
        self.knn_k = knn_k
        self.inner_folds = inner_folds
        self.stack_C = stack_C
        self.seed = seed

    def _base_names(self) -> list[str]:
        names = [b.strip() for b in str(self.bases).split(",") if b.strip()]
        if not names or len(set(names)) != len(names) or "stacked" in names:
            raise RouterError(f"stacked: bad bases {self.bases!r}")
        return names

    def _make_base(self, name: str) -> Router:
        params = {"k": int(self.knn_k)} if name == "knn" else {}
        router = make_router(name, **params)
        if "seed" in router.get_params():
            router.set_params(seed=int(self.seed))
        return router

    def fit(self, X, Y, cost=None, experts=None, domains=None) -> "StackedRouter":
        """As ``Router.fit``, plus optional ``domains`` labels handed to a ``domain`` base."""
        self._labels = None if domains is None else np.asarray([str(d) for d in domains])
        try:
            return super().fit(X, Y, cost=cost, experts=experts)
        finally:
            self._labels = None

    def _fit_base(self, name, X, Y, cost, rows):
        base = self._make_base(name)
        extra = {"domains": self._labels[rows]} if base.takes_domains and self._labels is not None else {}
        return base.fit(X[rows], Y[rows], cost=None if cost is None else cost[rows], experts=self.experts_, **extra)

    def _fit(self, X, Y, cost):
        names = self._base_names()
        n, m = Y.shape
        oof = np.full((len(names), n, m), np.nan)
        folds = inner_folds(n, int(self.inner_folds), int(self.seed))
        for f in range(int(self.inner_folds)):
            te = folds == f
            for b, name in enumerate(names):
                oof[b, te] = self._fit_base(name, X, Y, cost, ~te).predict_scores(X[te])
        self.stack_coef_ = _fit_stack(oof, Y, float(self.stack_C))
        every = np.ones(n, dtype=bool)
        self.bases_ = [self._fit_base(name, X, Y, cost, every) for name in names]

    def predict_scores(self, X: np.ndarray) -> np.ndarray:
        X = self.check_X(X)
        preds = np.stack([b.predict_scores(X) for b in self.bases_])      # (B, n, m)
        return _apply_stack(self.stack_coef_, preds)

    # -- persistence: the bases' arrays, prefixed ----------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        out = super().state_arrays()
        for name, base in zip(self._base_names(), self.bases_):
            out.update({f"{name}__{k}": v for k, v in base.state_arrays().items()})
        return out

    def _after_load(self) -> None:
        arrays = getattr(self, "_loaded_arrays", {})
        self.bases_ = []
        for name in self._base_names():
            base = self._make_base(name)
            own = {k.split("__", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{name}__")}
            self.bases_.append(type(base).from_state(base.get_params(), self.experts_, self.n_features_in_, own))

    @classmethod
    def from_state(cls, params, experts, n_features, arrays):
        """Rebuild the stack and every base from the prefixed arrays."""
        router = cls(**params)
        router._loaded_arrays = arrays
        router.experts_ = list(experts)
        router.n_features_in_ = int(n_features)
        if "stack_coef_" not in arrays:
            raise RouterError("artifact for stacked lacks arrays ['stack_coef_']")
        router.stack_coef_ = arrays["stack_coef_"]
        router._after_load()
        del router._loaded_arrays
        return router


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _fit_stack(oof: np.ndarray, Y: np.ndarray, C: float) -> np.ndarray:
    """Per expert: non-negative weights (B) and an intercept of a logistic model on logit(base scores).

    Cross-entropy with fractional targets (F1 scores are valid targets) plus an L2 penalty 1/(2C)
    on the weights; weights are bounded below by 0 so a noisy base can be ignored but never inverted.
    """
    from scipy.optimize import minimize

    B, n, m = oof.shape
    coef = np.zeros((m, B + 1))
    coef[:, :B] = 1.0 / B  # fallback: plain average of logits
    for j in range(m):
        seen = ~np.isnan(Y[:, j])
        y = Y[seen, j]
        F = _logit(oof[:, seen, j]).T
        if seen.sum() < 10:
            continue

        def loss(w, F=F, y=y):
            z = F @ w[:B] + w[B]
            p = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
            nll = np.mean(np.logaddexp(0, z) - y * z)
            grad_z = (p - y) / len(y)
            reg = 0.5 / (C * len(y))
            return nll + reg * w[:B] @ w[:B], np.concatenate([F.T @ grad_z + 2 * reg * w[:B], [grad_z.sum()]])

        res = minimize(loss, coef[j], jac=True, method="L-BFGS-B",
                       bounds=[(0.0, None)] * B + [(None, None)])
        coef[j] = res.x
    return coef


def _apply_stack(coef: np.ndarray, preds: np.ndarray) -> np.ndarray:
    B = preds.shape[0]
    z = np.einsum("bnm,mb->nm", _logit(preds), coef[:, :B]) + coef[None, :, B]
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
