"""The reference graders and the generated prompt set behind the local experts' router labels."""
from __future__ import annotations

import pytest

from eval.grading import grade, grade_choice, grade_contains, grade_numeric
from eval.local_prompts import build


@pytest.mark.parametrize("answer,reference,expected", [
    ("19", "19", 1.0), ("The answer is 19.", "19", 1.0), ("1,200", "1200", 1.0),
    ("12 + 7 = 19", "19", 1.0), ("12 + 7 = 18", "19", 0.0),  # restated sum: the number after "="
    ("12 + 7 is 19", "19", 0.0),  # without "=", the first number is the answer
    ("nineteen", "19", 0.0), ("", "19", 0.0), ("-3", "-3", 1.0),
])
def test_numeric(answer, reference, expected):
    assert grade_numeric(answer, reference) == expected


@pytest.mark.parametrize("answer,reference,expected", [
    ("Paris.", "Paris", 1.0), ("The capital is paris", "Paris", 1.0), ("Parisian", "Paris", 0.0),
    ("New Delhi", "New Delhi|Delhi", 1.0), ("delhi!", "New Delhi|Delhi", 1.0), ("Mumbai", "New Delhi|Delhi", 0.0),
    ("Buenos  Aires", "Buenos Aires", 1.0),
])
def test_contains(answer, reference, expected):
    assert grade_contains(answer, reference) == expected


@pytest.mark.parametrize("answer,expected", [("Odd", 1.0), ("It is odd.", 1.0), ("even", 0.0),
                                             ("odd or even", 0.0), ("oddly enough", 0.0)])
def test_choice_needs_exactly_the_right_label(answer, expected):
    assert grade_choice(answer, "odd", "even|odd") == expected


def test_unknown_grader_is_an_error():
    with pytest.raises(ValueError):
        grade("judge", "x", "y")


def test_prompt_set_is_deterministic_and_self_consistent():
    items = build()
    assert items == build()
    assert {it.task for it in items} == {"arithmetic", "capital", "antonym", "parity"}
    assert len({it.prompt for it in items}) == len(items), "duplicate prompts"
    for it in items:  # every reference answer passes its own grader (the grader can say yes)
        assert grade(it.grader, it.reference.split("|")[0], it.reference, it.choices) == 1.0, it
    sums = [it for it in items if "+" in it.prompt]
    a, b = (int(x) for x in sums[0].prompt.split("What is ")[1].split("?")[0].split(" + "))
    assert sums[0].reference == str(a + b)
