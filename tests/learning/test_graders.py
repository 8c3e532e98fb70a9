"""The reference grader: exact / normalised / numeric matching and reference sets."""
import asyncio

import pytest

from router_gateway.learning.graders import (
    ReferenceGrader,
    last_number,
    load_references,
    normalise,
    reference_score,
)
from router_gateway.state.request_log import prompt_digest


def test_normalise_drops_case_punctuation_articles():
    assert normalise("  The Eiffel-Tower, in PARIS! ") == "eiffeltower in paris"


@pytest.mark.parametrize("text,value", [("so 1,234 apples", 1234.0), ("costs $12.50.", 12.5),
                                        ("first 3 then -7", -7.0), ("no digits", None), ("45%", 45.0)])
def test_last_number(text, value):
    assert last_number(text) == value


@pytest.mark.parametrize("answer,reference,mode,score", [
    ("42", "42", "exact", 1.0), ("42.", "42", "exact", 0.0),
    ("The answer is Paris.", "paris", "normalised", 1.0), ("Parisian", "paris", "normalised", 0.0),
    ("so she has 1,200 dollars", "1200", "numeric", 1.0), ("so 1201", "1200", "numeric", 0.0),
    ("#### 18", "18", "auto", 1.0), ("It is Lyon", "Paris", "auto", 0.0), (None, "x", "auto", 0.0),
])
def test_reference_score_modes(answer, reference, mode, score):
    assert reference_score(answer, reference, mode) == score


def test_unknown_mode_refused():
    with pytest.raises(ValueError, match="unknown match mode"):
        ReferenceGrader({}, mode="fuzzy")


def test_grader_grades_covered_prompts_only(tmp_path):
    path = tmp_path / "refs.csv"
    path.write_text("prompt,reference\nWhat is 6*7?,42\nCapital of France?,Paris\n")
    refs = load_references(path)
    assert refs[prompt_digest("What is 6*7?")] == "42"
    grader = ReferenceGrader(refs)
    grades = asyncio.run(grader.grade("What is 6*7?", {"a": "It is 42", "b": "41", "c": None}))
    assert {e: g.score for e, g in grades.items()} == {"a": 1.0, "b": 0.0, "c": 0.0}
    assert all(g.grader == "reference" and g.cost_usd == 0.0 for g in grades.values())
    assert asyncio.run(grader.grade("unknown prompt", {"a": "42"})) == {}


def test_reference_set_needs_columns(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("question,answer\nq,a\n")
    with pytest.raises(ValueError, match="'prompt' and 'reference'"):
        load_references(path)
