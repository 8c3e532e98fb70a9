"""The judge grader with a fake judge: prompt, parsing, order swap, cost accounting."""
import asyncio

import pytest

from router_gateway.learning.judge import JudgeGrader, parse_absolute, parse_pairwise


@pytest.mark.parametrize("reply,score", [("7", 0.7), (" 10.", 1.0), ("Grade: 0", 0.0), ("12", 1.0), ("no", None), ("8/10", 0.8),
                                         ("The score is 6", 0.6), ("2 + 3", None), ("10-7", None)])
def test_parse_absolute(reply, score):
    assert parse_absolute(reply) == score


@pytest.mark.parametrize("reply,verdict", [("A", "A"), ("b.", "B"), ("Tie", "tie"), ("Answer A", "A"), ("?", None)])
def test_parse_pairwise(reply, verdict):
    assert parse_pairwise(reply) == verdict


def test_absolute_grades_every_answer_and_counts_cost():
    asked = []

    async def ask(expert, text, max_tokens):
        asked.append((expert, text))
        return ("9" if "[Answer]\nParis" in text else "1"), 0.002

    judge = JudgeGrader(ask, "j")
    grades = asyncio.run(judge.grade("Capital of France?", {"a": "Paris", "b": "Lyon", "c": None}))
    assert {e: g.score for e, g in grades.items()} == {"a": 0.9, "b": 0.1, "c": 0.0}
    assert grades["a"].cost_usd == 0.002 and grades["a"].grader == "judge:j"
    assert len(asked) == 2 and "Capital of France?" in asked[0][1]  # no call for a failed answer
    assert judge.spent_usd == pytest.approx(0.004)


def test_pairwise_swaps_order_so_position_bias_cancels():
    async def always_first(expert, text, max_tokens):  # a judge that always prefers answer A
        return "A", 0.001

    judge = JudgeGrader(always_first, "j", mode="pairwise", reference_expert="ref")
    grades = asyncio.run(judge.grade("q", {"x": "one", "ref": "two"}))
    assert grades["x"].score == 0.5  # A then B: a tie, not a win
    assert grades["x"].cost_usd == pytest.approx(0.002)


def test_unreadable_verdict_gives_no_grade():
    async def ask(expert, text, max_tokens):
        return "I cannot say", 0.001

    judge = JudgeGrader(ask, "j")
    assert asyncio.run(judge.grade("q", {"x": "a"})) == {}
    assert judge.unreadable == 1 and judge.spent_usd == 0.001
