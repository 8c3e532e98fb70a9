"""The judge grader: another expert reads the prompt and an answer and grades it.

Absolute mode (the default) asks for one grade from 0 to 10 per answer; the score is grade / 10.
Pairwise mode compares each answer with a reference expert's answer twice, the order swapped,
so a judge that prefers whichever answer comes first scores a tie instead of a win; the score is
the mean of the two verdicts (win 1, tie 0.5, loss 0). Absolute is the default because it needs one
judge call per answer (pairwise: two) and yields a score on the same scale as the benchmark tables,
which is what the routers learn from; pairwise is for judges whose absolute grades are uninformative.

Every judge call goes through ``ask`` (the gateway's forwarder: the call is logged and priced like a
request) and its cost is returned with the grade, so it is counted in the shadow budget.
"""
from __future__ import annotations

import re
from typing import Awaitable, Callable

from router_gateway.learning.graders import Grade

ABSOLUTE_PROMPT = (
    "You are grading an AI assistant's answer. Judge only whether the answer is correct and "
    "answers the question; ignore style and length.\n\n[Question]\n{prompt}\n\n[Answer]\n{answer}\n\n"
    "Grade the answer from 0 (wrong or no answer) to 10 (fully correct). Reply with the number only.")
PAIRWISE_PROMPT = (
    "You are comparing two AI assistants' answers to the same question. Judge only correctness and "
    "whether the question is answered.\n\n[Question]\n{prompt}\n\n[Answer A]\n{a}\n\n[Answer B]\n{b}\n\n"
    "Which answer is better? Reply with A, B or tie only.")
#: tokens of the grading template around the prompt and answer (chars / 4), for budget estimates
ABSOLUTE_OVERHEAD_TOKENS = len(ABSOLUTE_PROMPT.format(prompt="", answer="")) // 4 + 1

#: ask(expert, prompt text, max_tokens) -> (reply text or None if the call failed, USD it cost)
Ask = Callable[[str, str, int], Awaitable[tuple[str | None, float]]]

#: a grade is a number alone ("7", "7/10", "7."), or one after "grade" / "score" / "rating"; a number
#: inside an echoed question ("2 + 3") is not a grade
_ALONE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?\s*[.!]?\s*(?:\n|$)")
_LABELLED = re.compile(r"\b(?:grade|score|rating)\b\s*(?:is|of)?\s*[:=]?\s*(\d+(?:\.\d+)?)", re.I)


def parse_absolute(reply: str | None) -> float | None:
    """The grade on the 0-10 scale -> [0, 1]; None when the reply holds no readable grade."""
    match = _ALONE.match(reply or "") or _LABELLED.search(reply or "")
    if not match:
        return None
    return min(max(float(match.group(1)) / 10.0, 0.0), 1.0)


def parse_pairwise(reply: str | None) -> str | None:
    """'A', 'B' or 'tie' from a verdict; None when unreadable."""
    text = (reply or "").strip().lower()
    if text.startswith("tie"):
        return "tie"
    match = re.match(r"[\W_]*(?:answer\s+)?([ab])\b", text)
    return match.group(1).upper() if match else None


class JudgeGrader:
    """Grades answers with a judge expert (see module doc). Failed or unreadable verdicts give no
    grade (the answer stays unlabelled), but their cost is still counted."""

    def __init__(self, ask: Ask, judge: str, mode: str = "absolute", reference_expert: str | None = None,
                 max_tokens: int = 8):
        if mode == "pairwise" and not reference_expert:
            raise ValueError("pairwise judging needs a reference expert")
        self.ask, self.judge, self.mode = ask, judge, mode
        self.reference_expert, self.max_tokens = reference_expert, max_tokens
        self.name = f"judge:{judge}"
        self.unreadable = 0
        self.spent_usd = 0.0

    async def grade(self, prompt: str, answers: dict[str, str | None]) -> dict[str, Grade]:
        return (await self.grade_with_cost(prompt, answers))[0]

    async def grade_with_cost(self, prompt: str, answers: dict[str, str | None]) -> tuple[dict[str, Grade], float]:
        """The grades and everything the judge calls cost, unreadable verdicts included."""
        out: dict[str, Grade] = {}
        total = 0.0
        for expert, answer in answers.items():
            if answer is None:
                out[expert] = Grade(expert, 0.0, self.name, 0.0, "no answer")
                continue
            if self.mode == "absolute":
                score, cost, note = await self._absolute(prompt, answer)
            else:
                score, cost, note = await self._pairwise(prompt, answer, answers.get(self.reference_expert))
            self.spent_usd += cost
            total += cost
            if score is None:
                self.unreadable += 1
                continue
            out[expert] = Grade(expert, score, self.name, cost, note)
        return out, total

    async def _absolute(self, prompt: str, answer: str) -> tuple[float | None, float, str]:
        reply, cost = await self.ask(self.judge, ABSOLUTE_PROMPT.format(prompt=prompt, answer=answer),
                                     self.max_tokens)
        return parse_absolute(reply), cost, f"absolute: {(reply or '').strip()[:40]!r}"

    async def _pairwise(self, prompt: str, answer: str, reference: str | None) -> tuple[float | None, float, str]:
        if reference is None:
            return None, 0.0, "no reference answer"
        first, c1 = await self.ask(self.judge, PAIRWISE_PROMPT.format(prompt=prompt, a=answer, b=reference),
                                   self.max_tokens)
        second, c2 = await self.ask(self.judge, PAIRWISE_PROMPT.format(prompt=prompt, a=reference, b=answer),
                                    self.max_tokens)
        v1, v2 = parse_pairwise(first), parse_pairwise(second)
        if v1 is None or v2 is None:
            return None, c1 + c2, "unreadable verdict"
        win = {"A": 1.0, "tie": 0.5, "B": 0.0}
        score = (win[v1] + (1.0 - win[v2])) / 2  # the answer is A first, B second
        return score, c1 + c2, f"pairwise: {v1}/{v2}"
