"""Re-grading surprising grades: a noisy judge asked again where its grade is least expected.

A judge that sometimes gives the wrong grade (a flipped verdict) hurts the loop twice: the candidate
learns from wrong labels, and the gate judges it on wrong labels. Asking the judge again for every
answer would double the grading spend; a wrong grade, though, is mostly a *surprising* one: it
disagrees with what the candidate router (or, before one exists, the expert's mean grade) predicts.
So only grades farther than ``surprise`` from the prediction are asked again: once, and again while the
calls disagree, up to ``extra`` more calls; the median of the calls is kept. For 0/1 grades and
``extra`` 2 that is a majority vote of 3 that stops after 2 agreeing calls: with 10% of the calls
flipped independently, it is wrong 2.8% of the time and costs 1.18 extra calls per grade asked again. Every extra call is a judge call like the first,
priced and counted in the shadow budget.

This helps only when the judge's errors are independent per call (sampling noise). A judge that is
consistently wrong on a (prompt, answer) gives the same wrong grade again: re-grading then costs
and buys nothing (eval.learning_sim measures both, ``--noise``).
"""
from __future__ import annotations

import numpy as np


def surprising(predicted: dict[int, float], grades: dict[int, float], surprise: float) -> list[int]:
    """Experts whose grade lies more than ``surprise`` from the prediction (no prediction: not surprising)."""
    out = []
    for j, g in grades.items():
        p = predicted.get(j)
        if p is not None and np.isfinite(p) and abs(float(g) - float(p)) > surprise:
            out.append(j)
    return out


def settled(calls: list[float], tolerance: float = 0.25) -> bool:
    """Stop asking once the last two calls agree (within ``tolerance``): another call would not move
    the median by more than that."""
    return len(calls) >= 2 and abs(float(calls[-1]) - float(calls[-2])) <= tolerance


def combine(calls: list[float]) -> float:
    """One grade from several judge calls on the same answer: their median (majority for 0/1)."""
    if not calls:
        raise ValueError("no judge calls to combine")
    return float(np.median(np.asarray(calls, dtype=np.float64)))


def predicted_grades(candidate, x: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> dict[int, float]:
    """What a grade is compared with: the candidate router's score for each expert on ``x``, or,
    before a candidate exists, each expert's mean grade so far (nothing for an expert never graded)."""
    if candidate is not None:
        p = np.asarray(candidate.predict_scores(np.asarray(x)[None, :]), dtype=np.float64)[0]
        return {j: float(v) for j, v in enumerate(p) if np.isfinite(v)}
    return {j: float(sums[j] / counts[j]) for j in range(len(counts)) if counts[j] > 0}
