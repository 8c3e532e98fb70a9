"""The shared decision policy: scores -> ranked experts.

utility = quality - cost_weight * cost, with ineligible experts masked out. ``cost`` is whatever unit
the caller chose (the gateway passes cost normalised to the most expensive candidate; eval passes USD
with its own cost-weight sweep). Exploration, when a router explores, is deterministic given the
request id: ``unit_hash`` maps it into [0, 1).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ranking:
    """Experts in decreasing utility; ``order`` holds only eligible experts' indices."""

    order: np.ndarray
    utility: np.ndarray


def rank_experts(scores: np.ndarray, cost: np.ndarray, cost_weight: float,
                 eligible: np.ndarray | None = None) -> Ranking:
    """Rank one prompt's experts by ``scores - cost_weight * cost``; ties go to the cheaper expert."""
    scores = np.asarray(scores, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.float64)
    utility = scores - float(cost_weight) * cost
    mask = np.ones_like(utility, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    # lexsort: last key is primary -> sort by -utility, then by cost
    order = np.lexsort((cost, -utility))
    return Ranking(order=order[mask[order]], utility=utility)


def choose_batch(scores: np.ndarray, cost: np.ndarray, cost_weight: float) -> np.ndarray:
    """Vectorised choice for many prompts (eval): argmax of utility per row, ties to the cheaper."""
    utility = np.asarray(scores, dtype=np.float64) - float(cost_weight) * np.asarray(cost, dtype=np.float64)
    best = utility.max(axis=1, keepdims=True)
    tied = np.isclose(utility, best, rtol=0.0, atol=1e-12)
    return np.where(tied, cost, np.inf).argmin(axis=1)


def unit_hash(request_id: str, salt: str = "") -> float:
    """Deterministic value in [0, 1) for a request id, for reproducible exploration."""
    digest = hashlib.blake2b((salt + request_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def upper_hull_points(cost: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (x sorted) of the non-decreasing upper concave hull of (cost, quality) points: what
    random mixes of the points reach."""
    cost, quality = np.asarray(cost, dtype=np.float64), np.asarray(quality, dtype=np.float64)
    order = np.lexsort((-quality, cost))
    hull: list[tuple[float, float]] = []
    for x, y in zip(cost[order], quality[order]):
        if hull and y <= hull[-1][1]:
            continue  # dearer and not better: dominated
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (y2 - y1) * (x - x1) <= (y - y1) * (x2 - x1):  # the middle point is under the chord
                hull.pop()
            else:
                break
        if hull and x == hull[-1][0]:
            hull[-1] = (x, y)
        else:
            hull.append((x, y))
    arr = np.asarray(hull)
    return arr[:, 0], arr[:, 1]
