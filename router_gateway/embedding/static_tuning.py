"""Tune a static token table so that its mean-pooled prompt vectors point where MiniLM's do.

Two ways, both measured in eval/static_tuned_report.md: ``linear_start`` (one affine map of the
whole table, fitted by ridge regression: what the ``static-tuned`` build uses, it routes best) and
``fit_table`` (per-token training, below; it memorises its corpus and routes a little worse).

The isolated-token distillation (``static_backend``) gives each word piece MiniLM's vector for that
token *alone*; a prompt's static vector is their mean, which misses what context adds. Here the
table is trained (tokenlearn-style) on real prompts: for each prompt, the mean of its tokens' rows
should have cosine 1 with MiniLM's sentence embedding of the same prompt. Training starts from the
isolated-token table (so tokens absent from the corpus keep a sensible vector) and is pulled back
towards it by an L2 penalty (so a token seen in a handful of prompts does not memorise them).

Only the *build* needs torch; serving is the same numpy lookup + mean as ``static_backend``.
"""
from __future__ import annotations

import sys
import time
from typing import Callable

import numpy as np

#: per-token training defaults (chosen on held-out cosine to MiniLM on ~1-5k prompts)
EPOCHS = 10
LEARNING_RATE = 0.03
BATCH_SIZE = 256
ANCHOR_WEIGHT = 0.01


def token_bags(encodings: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Flattened token ids and the offset of each prompt's first id (EmbeddingBag's input form)."""
    lengths = np.fromiter((len(ids) for ids in encodings), dtype=np.int64, count=len(encodings))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat = np.fromiter((t for ids in encodings for t in ids), dtype=np.int64, count=int(lengths.sum()))
    return flat, offsets


def mean_rows(table: np.ndarray, encodings: list[list[int]]) -> np.ndarray:
    """Each prompt's mean row (not normalised); zero for an empty prompt."""
    out = np.zeros((len(encodings), table.shape[1]), dtype=np.float32)
    for i, ids in enumerate(encodings):
        if ids:
            out[i] = table[ids].mean(axis=0)
    return out


def linear_start(encodings: list[list[int]], targets: np.ndarray, init: np.ndarray,
                 ridge: float = 1e-4) -> np.ndarray:
    """``init`` moved into MiniLM's space by one affine map, fitted by ridge regression of the
    targets on the prompts' mean rows. A mean of mapped rows is the map of the mean, so this is
    the best linear map of the static embedding, and a starting point (and anchor) for training
    that also holds for tokens the corpus never shows."""
    X = mean_rows(init, encodings)
    X = np.hstack([X, np.ones((len(X), 1), np.float32)]).astype(np.float64)
    W = np.linalg.solve(X.T @ X + ridge * len(X) * np.eye(X.shape[1]), X.T @ np.asarray(targets, np.float64))
    return (init @ W[:-1] + W[-1]).astype(np.float32)


def _log(msg: str) -> None:
    print(f"[static-tune] {msg}", file=sys.stderr, flush=True)


def fit_table(encodings: list[list[int]], targets: np.ndarray, init: np.ndarray, *,
              epochs: int = EPOCHS, lr: float = LEARNING_RATE, batch_size: int = BATCH_SIZE,
              anchor: float = ANCHOR_WEIGHT, seed: int = 0, threads: int | None = 1,
              progress: Callable[[str], None] | None = _log) -> np.ndarray:
    """Train a (vocab, dim) table so that mean(table[ids]) has cosine ~1 with each target row.

    ``encodings``: token ids per prompt (empty prompts are skipped); ``targets``: (n, dim) MiniLM
    embeddings of the same prompts; ``init``: the starting table (e.g. isolated-token vectors).
    """
    import torch

    if threads:  # one thread by default: the build shares a small machine with the gateway
        torch.set_num_threads(threads)
    keep = [i for i, ids in enumerate(encodings) if ids]
    encodings = [encodings[i] for i in keep]
    y_all = torch.from_numpy(np.ascontiguousarray(targets[keep], dtype=np.float32))
    torch.manual_seed(seed)
    start = torch.from_numpy(np.ascontiguousarray(init, dtype=np.float32))
    bag = torch.nn.EmbeddingBag(start.shape[0], start.shape[1], mode="mean", sparse=True)
    with torch.no_grad():
        bag.weight.copy_(start)
    optimiser = torch.optim.SparseAdam(bag.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(encodings))
        total = 0.0
        for s in range(0, len(order), batch_size):
            rows = order[s:s + batch_size]
            flat, offsets = token_bags([encodings[i] for i in rows])
            flat_t = torch.from_numpy(flat)
            pred = bag(flat_t, torch.from_numpy(offsets))
            loss = (1.0 - torch.nn.functional.cosine_similarity(pred, y_all[rows], dim=1)).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if anchor:  # decoupled decay of the touched rows back towards the isolated-token table
                with torch.no_grad():
                    used = torch.unique(flat_t)
                    bag.weight[used] -= anchor * (bag.weight[used] - start[used])
            total += float(loss.detach()) * len(rows)
        if progress:
            progress(f"epoch {epoch + 1}/{epochs}: loss {total / len(order):.4f} "
                     f"({time.perf_counter() - t0:.0f} s)")
    return bag.weight.detach().numpy().copy()
