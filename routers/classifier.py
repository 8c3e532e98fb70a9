"""Learned multi-output quality predictor (RouteLLM-style) on prompt embeddings.

A small multi-task network: one shared hidden layer (or none: per-expert logistic regression)
and a sigmoid output per expert, trained with a *masked* binary cross-entropy so partial labels
(NaN where an expert was not tried) simply do not contribute. Fractional scores (F1) are valid
BCE targets. Regularisation is chosen inside the training data: a seeded validation split stops
training at the best epoch (and picks the weight decay from a small grid). torch is used only to
fit; the weights are numpy arrays and prediction is numpy, so serving needs no torch.
"""
from __future__ import annotations

import numpy as np

from routers._common import expert_means
from routers.base import Router, RouterError


class ClassifierRouter(Router):
    """Masked-BCE multi-output MLP (``hidden=0``: per-expert logistic) on embeddings."""

    router_type = "classifier"
    state_attrs = ("W1_", "b1_", "W2_", "b2_")

    def __init__(self, hidden: int = 128, weight_decays: tuple = (1e-4, 1e-3, 1e-2), max_epochs: int = 400,
                 lr: float = 3e-3, dropout: float = 0.1, val_fraction: float = 0.15, seed: int = 0):
        self.hidden = hidden
        self.weight_decays = weight_decays
        self.max_epochs = max_epochs
        self.lr = lr
        self.dropout = dropout
        self.val_fraction = val_fraction
        self.seed = seed

    def _fit(self, X, Y, cost):
        if int(self.hidden) < 0:
            raise RouterError("classifier: hidden must be >= 0")
        rng = np.random.default_rng(int(self.seed))
        n = X.shape[0]
        val = np.zeros(n, dtype=bool)
        if n >= 20:
            val[rng.permutation(n)[: max(1, int(round(n * float(self.val_fraction))))]] = True
        best = None
        for wd in self.weight_decays:  # choose weight decay and epoch count on the inner split
            state, loss, epochs = _train(X, Y, val, int(self.hidden), float(wd), int(self.max_epochs),
                                         float(self.lr), float(self.dropout), int(self.seed))
            if best is None or loss < best[1]:
                best = (wd, loss, epochs)
        wd, _, epochs = best
        # refit on all the training rows for the chosen number of epochs
        state, _, _ = _train(X, Y, np.zeros(n, dtype=bool), int(self.hidden), float(wd), max(epochs, 1),
                             float(self.lr), float(self.dropout), int(self.seed))
        self.W1_, self.b1_, self.W2_, self.b2_ = state
        self.chosen_weight_decay_ = float(wd)
        self.chosen_epochs_ = int(epochs)

    def predict_scores(self, X: np.ndarray) -> np.ndarray:
        X = self.check_X(X).astype(np.float64)
        h = np.maximum(X @ self.W1_ + self.b1_, 0.0) if self.W1_.size else X
        z = h @ self.W2_ + self.b2_
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def _train(X, Y, val, hidden, weight_decay, max_epochs, lr, dropout, seed, weights=None, init=None):
    """Full-batch AdamW on the masked BCE; returns (arrays, best validation loss, best epoch).

    ``weights`` (n, m), optional: per-entry loss weights (importance weights for logged data);
    ``init``: arrays (W1, b1, W2, b2) to start from (warm start) instead of a seeded random init.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small dense problems: threads only add contention
    try:
        return _train_loop(torch, X, Y, val, hidden, weight_decay, max_epochs, lr, dropout, seed, weights, init)
    finally:
        torch.set_num_threads(threads)


def _train_loop(torch, X, Y, val, hidden, weight_decay, max_epochs, lr, dropout, seed, weights, init):
    torch.manual_seed(seed)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    seen = ~np.isnan(Y)
    mask = torch.as_tensor(seen * (1.0 if weights is None else np.nan_to_num(weights)), dtype=torch.float32)
    Yt = torch.as_tensor(np.nan_to_num(Y, nan=0.0), dtype=torch.float32)
    d, m = X.shape[1], Y.shape[1]
    layers = [torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout)] if hidden else []
    out = torch.nn.Linear(hidden or d, m)
    net = torch.nn.Sequential(*layers, out)
    with torch.no_grad():
        if init is not None:
            W1, b1, W2, b2 = init
            tensors = ([W1.T, b1] if hidden else []) + [W2.T, b2]
            for param, value in zip(net.parameters(), tensors):
                param.copy_(torch.as_tensor(np.ascontiguousarray(value), dtype=torch.float32))
        else:  # start from each expert's base rate
            out.bias.copy_(torch.logit(torch.as_tensor(np.clip(expert_means(Y), 0.02, 0.98),
                                                       dtype=torch.float32)))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    tr = torch.as_tensor(~val)
    vl = torch.as_tensor(val)
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")
    best_loss, best_epoch, best_state = np.inf, max_epochs, None
    for epoch in range(1, max_epochs + 1):
        net.train()
        opt.zero_grad()
        loss = (bce(net(Xt[tr]), Yt[tr]) * mask[tr]).sum() / mask[tr].sum().clamp(min=1)
        loss.backward()
        opt.step()
        if val.any() and (epoch % 5 == 0 or epoch == max_epochs):
            net.eval()
            with torch.no_grad():
                v = float((bce(net(Xt[vl]), Yt[vl]) * mask[vl]).sum() / mask[vl].sum().clamp(min=1))
            if v < best_loss - 1e-6:
                best_loss, best_epoch = v, epoch
                best_state = [p.detach().clone() for p in net.parameters()]
            elif epoch - best_epoch >= 60:
                break
    params = best_state if best_state is not None else [p.detach() for p in net.parameters()]
    arrays = [p.numpy().astype(np.float64) for p in params]
    if hidden:
        W1, b1, W2, b2 = arrays
        state = (W1.T.copy(), b1, W2.T.copy(), b2)
    else:
        W2, b2 = arrays
        state = (np.zeros((0, 0)), np.zeros(0), W2.T.copy(), b2)
    return state, (best_loss if val.any() else float(loss.detach())), best_epoch
