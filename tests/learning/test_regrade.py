"""Re-grading surprising grades (learning.regrade): which grades are asked again, when to stop, what is kept."""
from __future__ import annotations

import numpy as np
import pytest

from router_gateway.learning.regrade import (
    combine,
    predicted_grades,
    settled,
    surprising,
)


def test_only_grades_far_from_the_prediction_are_surprising():
    predicted = {0: 0.9, 1: 0.5, 2: 0.1}
    grades = {0: 0.0, 1: 1.0, 2: 0.0, 3: 1.0}  # expert 3 has no prediction: never surprising
    assert surprising(predicted, grades, 0.5) == [0]
    assert surprising(predicted, grades, 0.4) == [0, 1]


def test_asking_stops_once_two_calls_agree():
    assert not settled([1.0])
    assert settled([1.0, 1.0])
    assert not settled([0.0, 1.0])
    assert settled([0.0, 1.0, 1.0])


def test_the_median_is_a_majority_vote_for_binary_grades():
    assert combine([0.0, 1.0, 1.0]) == 1.0
    assert combine([1.0, 0.0, 0.0]) == 0.0
    assert combine([0.4]) == 0.4
    with pytest.raises(ValueError):
        combine([])


class Fixed:
    def predict_scores(self, X):
        return np.tile([0.2, 0.8], (len(X), 1))


def test_prediction_is_the_candidates_or_else_the_experts_mean_grade():
    x = np.zeros(4)
    assert predicted_grades(Fixed(), x, np.zeros(2), np.zeros(2)) == {0: 0.2, 1: 0.8}
    assert predicted_grades(None, x, np.array([3.0, 0.0]), np.array([4.0, 0.0])) == {0: 0.75}


def test_majority_of_three_cuts_independent_flips():
    """The rule as the replay and the gateway run it: 10% flips per call -> about 2.8% wrong, ~1.18 calls extra."""
    rng = np.random.default_rng(0)
    wrong, extra, n = 0, 0, 20000
    for _ in range(n):
        calls = [float(rng.random() < 0.1)]  # truth 0, a flip says 1
        while len(calls) <= 2 and not settled(calls):
            calls.append(float(rng.random() < 0.1))
        wrong += combine(calls) == 1.0
        extra += len(calls) - 1
    assert 0.02 < wrong / n < 0.036
    assert 1.14 < extra / n < 1.22
