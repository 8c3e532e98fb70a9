"""Reference graders: score an expert's answer against a reference answer, in [0, 1].

Deliberately plain and deterministic (no judge model), so labels can be recomputed from the answers:

- ``numeric``: the answer's number equals the reference: the first number after the first ``=`` when the
  answer restates the sum ("11 + 20 = 31"), else the first number;
- ``contains``: one of the accepted answers (``|``-separated) occurs in the answer as a whole word, after
  lower-casing and stripping punctuation;
- ``choice``: exactly one of the task's labels (``|``-separated in ``choices``) occurs in the answer, and it
  is the reference one (an answer naming both "even" and "odd" scores 0).
"""
from __future__ import annotations

import re

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_NON_WORD = re.compile(r"[^a-z0-9 ]+")


def normalise(text: str) -> str:
    """Lower case, punctuation to spaces, single spaces, padded so whole words match as ' word '."""
    return " " + " ".join(_NON_WORD.sub(" ", text.lower()).split()) + " "


def grade_numeric(answer: str, reference: str) -> float:
    """1.0 when the answer's number equals the reference (commas in numbers ignored).

    Small models often restate the question ("11 + 20 = 31"): the number right after the first ``=`` is
    then the answer; otherwise the first number is, so "11 + 20 is 31" restating without ``=`` scores 0.
    """
    text = answer.replace(",", "")
    if "=" in text:
        text = text.split("=", 1)[1]
    match = _NUMBER.search(text)
    return float(match is not None and float(match.group()) == float(reference))


def grade_contains(answer: str, reference: str) -> float:
    """1.0 when any accepted answer (``a|b``) occurs in the answer as whole words."""
    text = normalise(answer)
    return float(any(normalise(ref) in text for ref in reference.split("|") if ref.strip()))


def grade_choice(answer: str, reference: str, choices: str) -> float:
    """1.0 when the reference label is the only one of ``choices`` (``a|b``) named in the answer."""
    text = normalise(answer)
    named = [c for c in choices.split("|") if normalise(c) in text]
    return float(named == [reference])


def grade(kind: str, answer: str, reference: str, choices: str = "") -> float:
    """Dispatch on the grader kind of a labelled prompt (numeric, contains, choice)."""
    if kind == "numeric":
        return grade_numeric(answer, reference)
    if kind == "contains":
        return grade_contains(answer, reference)
    if kind == "choice":
        return grade_choice(answer, reference, choices)
    raise ValueError(f"unknown grader {kind!r}")
