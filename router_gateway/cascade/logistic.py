"""L2-regularised logistic regression, with soft labels.

The learned verifier's model. Prediction is numpy only, so serving a verifier needs no scikit-learn
(fitting uses scipy's L-BFGS), and its state
is three arrays (feature mean, scale, weights) that an artifact stores without pickle. Targets may be
fractional (a metric score in [0, 1]): the loss is the cross-entropy against them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Logistic:
    """A fitted model: ``predict(X) = sigmoid(((X - mean) / scale) @ weights[1:] + weights[0])``."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        return _sigmoid(Z @ self.weights[1:] + self.weights[0])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -35, 35)))


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, sample_weight: np.ndarray | None = None,
                 max_iter: int = 500) -> Logistic:
    """Minimise summed weighted cross-entropy + ``l2`` * |w|^2 / 2 (intercept not penalised).

    L-BFGS (scipy, training only): with hundreds of embedding columns a Newton step's Hessian costs
    far more than the few hundred gradient evaluations L-BFGS needs."""
    from scipy.optimize import minimize

    X = np.asarray(X, dtype=np.float64)
    y = np.clip(np.asarray(y, dtype=np.float64), 0.0, 1.0)
    n, d = X.shape
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-9] = 1.0  # constant columns: leave them at 0 after centring
    Z = (X - mean) / scale
    prior = float(np.clip(np.average(y, weights=sw), 1e-4, 1 - 1e-4))

    def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = Z @ w[1:] + w[0]
        # log(1 + e^z) - y z, computed stably
        loss = float(np.sum(sw * (np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * w[1:] @ w[1:])
        r = sw * (_sigmoid(z) - y)
        return loss, np.concatenate([[r.sum()], Z.T @ r + l2 * w[1:]])

    w0 = np.zeros(d + 1)
    w0[0] = np.log(prior / (1 - prior))
    res = minimize(loss_grad, w0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return Logistic(mean, scale, res.x)


def fit_logistic_cv(X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                    l2_grid: tuple[float, ...] = (3.0, 30.0, 300.0)) -> tuple[Logistic, float]:
    """Pick the L2 strength by cross-validation over ``groups`` (log-loss), then fit on everything.

    Only the rows given are used, so called on training folds it never sees a test fold."""
    y = np.clip(np.asarray(y, dtype=np.float64), 0.0, 1.0)
    best, best_loss = l2_grid[0], np.inf
    for l2 in l2_grid:
        loss = 0.0
        for g in np.unique(groups):
            held = groups == g
            p = np.clip(fit_logistic(X[~held], y[~held], l2).predict(X[held]), 1e-6, 1 - 1e-6)
            loss -= float(np.sum(y[held] * np.log(p) + (1 - y[held]) * np.log(1 - p)))
        if loss < best_loss:
            best, best_loss = l2, loss
    return fit_logistic(X, y, best), best
