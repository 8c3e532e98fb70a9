"""Graders behind one interface: an answer (or several experts' answers) to one prompt -> a score in [0, 1].

``Grader.grade(prompt, answers)`` returns one ``Grade`` per expert that answered. Three kinds exist:
``reference`` (this module: exact / normalised / numeric match against a reference answer),
``judge`` (learning.judge: another expert grades) and ``feedback`` (what clients sent through
``/v1/feedback``, merged by the label store). A grade carries what it cost, so judge calls are
counted in the shadow budget; reference grades are free.

The reference grader is usable on its own (e.g. to label a prompt set offline)::

    from router_gateway.learning.graders import reference_score
    reference_score("The answer is 42.", "42", mode="numeric")   # -> 1.0
"""
from __future__ import annotations

import csv
import math
import re
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from router_gateway.state.request_log import prompt_digest

MatchMode = Literal["exact", "normalised", "numeric", "auto"]
MATCH_MODES = ("exact", "normalised", "numeric", "auto")

_NUMBER = re.compile(r"[-+]?\$?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?%?|[-+]?\.\d+")
_ARTICLES = {"a", "an", "the"}


@dataclass(frozen=True)
class Grade:
    """One expert's answer to one prompt, scored."""

    expert: str
    score: float          # in [0, 1]
    grader: str           # "reference", "judge:<expert>", "feedback"
    cost_usd: float = 0.0  # what grading cost (judge calls); counted in the shadow budget
    note: str = ""


class Grader(Protocol):
    """Scores the answers several experts gave to one prompt."""

    name: str

    async def grade(self, prompt: str, answers: dict[str, str | None]) -> dict[str, Grade]:
        """One grade per expert in ``answers``; an expert whose answer is None (the call failed) is
        either graded 0 or left out, as the grader documents. Prompts it cannot grade -> {}."""
        ...

    async def grade_with_cost(self, prompt: str, answers: dict[str, str | None]) -> tuple[dict[str, Grade], float]:
        """The grades and what grading cost in USD, calls that gave no grade included (the shadow
        budget counts every judge call)."""
        ...


# -- matching ------------------------------------------------------------------------------------
def normalise(text: str) -> str:
    """Lower case, punctuation and articles removed, whitespace collapsed (SQuAD-style)."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(w for w in text.split() if w not in _ARTICLES)


def parse_number(token: str) -> float | None:
    """A number written as ``1,234.5``, ``$12``, ``45%``, ``-3e2``; None if it is not one."""
    cleaned = token.replace(",", "").replace("$", "").rstrip("%")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def last_number(text: str) -> float | None:
    """The last number in ``text`` (GSM8K-style answers end with it), or None."""
    for token in reversed(_NUMBER.findall(text or "")):
        value = parse_number(token)
        if value is not None:
            return value
    return None


def numeric_match(answer: str, reference: str, rel_tol: float = 1e-6) -> bool:
    """The answer's last number equals the reference's number (relative tolerance ``rel_tol``)."""
    ref = parse_number(reference.strip()) if parse_number(reference.strip()) is not None else last_number(reference)
    got = last_number(answer)
    return ref is not None and got is not None and math.isclose(got, ref, rel_tol=rel_tol, abs_tol=1e-9)


def normalised_match(answer: str, reference: str) -> bool:
    """Normalised answer equals the normalised reference, or contains it as whole words."""
    a, r = normalise(answer), normalise(reference)
    if not r:
        return False
    return a == r or re.search(rf"(^|\s){re.escape(r)}($|\s)", a) is not None


def reference_score(answer: str | None, reference: str, mode: MatchMode = "auto") -> float:
    """1.0 when ``answer`` matches ``reference`` under ``mode``, else 0.0 (a missing answer is 0).

    ``exact``: identical after stripping whitespace. ``normalised``: see ``normalised_match``.
    ``numeric``: see ``numeric_match``. ``auto``: numeric when the reference is a number, else
    normalised.
    """
    if answer is None:
        return 0.0
    if mode == "exact":
        return float(answer.strip() == reference.strip())
    if mode == "numeric" or (mode == "auto" and parse_number(reference.strip()) is not None):
        return float(numeric_match(answer, reference))
    if mode in ("normalised", "auto"):
        return float(normalised_match(answer, reference))
    raise ValueError(f"unknown match mode {mode!r}; use one of {', '.join(MATCH_MODES)}")


# -- reference sets ------------------------------------------------------------------------------
def load_references(path: str | Path) -> dict[str, str]:
    """A CSV with ``prompt`` and ``reference`` columns -> {prompt digest: reference answer}."""
    path = Path(path)
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"prompt", "reference"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: needs 'prompt' and 'reference' columns")
        refs = {prompt_digest(r["prompt"]): r["reference"] for r in reader if (r.get("prompt") or "").strip()}
    if not refs:
        raise ValueError(f"{path}: no reference answers")
    return refs


class ReferenceGrader:
    """Grades answers to prompts that have a reference answer; other prompts get no grade.

    ``references`` maps a prompt digest (``request_log.prompt_digest``) or the prompt text itself
    to its reference answer. A failed call (answer None) is graded 0: the expert did not answer.
    """

    name = "reference"

    def __init__(self, references: dict[str, str], mode: MatchMode = "auto"):
        if mode not in MATCH_MODES:
            raise ValueError(f"unknown match mode {mode!r}; use one of {', '.join(MATCH_MODES)}")
        self.references = dict(references)
        self.mode = mode

    @classmethod
    def from_csv(cls, path: str | Path, mode: MatchMode = "auto") -> "ReferenceGrader":
        return cls(load_references(path), mode)

    def reference_for(self, prompt: str) -> str | None:
        return self.references.get(prompt_digest(prompt), self.references.get(prompt))

    def covers(self, prompt: str) -> bool:
        return self.reference_for(prompt) is not None

    def grade_sync(self, prompt: str, answers: dict[str, str | None]) -> dict[str, Grade]:
        reference = self.reference_for(prompt)
        if reference is None:
            return {}
        return {expert: Grade(expert, reference_score(answer, reference, self.mode), self.name,
                              note="no answer" if answer is None else self.mode)
                for expert, answer in answers.items()}

    async def grade(self, prompt: str, answers: dict[str, str | None]) -> dict[str, Grade]:
        return self.grade_sync(prompt, answers)

    async def grade_with_cost(self, prompt: str, answers: dict[str, str | None]) -> tuple[dict[str, Grade], float]:
        return self.grade_sync(prompt, answers), 0.0  # matching text costs nothing
