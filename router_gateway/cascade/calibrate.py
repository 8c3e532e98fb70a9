"""Thresholds for a cascade profile, calibrated from labelled rows (confidence, answer right).

Two targets:
- ``quality_floor``: the lowest threshold whose accepted answers are right at least that often
  (as few escalations as the floor allows);
- ``escalation_share``: the threshold that escalates that share of the rows.
"""
from __future__ import annotations

import numpy as np


def threshold_for_quality(confidence: np.ndarray, correct: np.ndarray, floor: float,
                          min_accepted: int = 20) -> float:
    """Smallest t with mean(correct | confidence >= t) >= floor over at least ``min_accepted`` rows;
    +inf (always escalate) when no threshold reaches the floor."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    order = np.argsort(-conf, kind="stable")
    c, y = conf[order], ok[order]
    precision = np.cumsum(y) / np.arange(1, len(y) + 1)
    # only cut between distinct confidences: rows with one confidence are accepted together
    last_of_tie = np.concatenate([c[1:] != c[:-1], [True]])
    good = np.flatnonzero(last_of_tie & (precision >= floor) & (np.arange(1, len(y) + 1) >= min_accepted))
    return float(c[good[-1]]) if good.size else float("inf")


def threshold_for_share(confidence: np.ndarray, escalation_share: float) -> float:
    """The threshold below which ``escalation_share`` of the rows fall."""
    if not 0.0 <= escalation_share <= 1.0:
        raise ValueError("escalation_share must be in [0, 1]")
    if escalation_share >= 1.0:
        return float("inf")
    return float(np.quantile(np.asarray(confidence, dtype=np.float64), escalation_share))
