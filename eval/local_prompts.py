"""The labelled prompt set used to measure the local experts (scripts/label_local_experts.py).

Generated here, deterministically (seeded), with reference answers; nothing is downloaded. Four short tasks a
100M-300M-parameter model can sometimes get right, each graded by eval/grading.py:

- ``arithmetic``: small sums and differences ("What is 12 + 7?"), numeric match;
- ``capital``: capitals of well-known countries (facts written out below), whole-word match;
- ``antonym``: the opposite of a common adjective (accepted answers written out below), whole-word match;
- ``parity``: "Is 37 even or odd?", a two-way classification (exactly the right label must be named).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
    "Russia": "Moscow", "Egypt": "Cairo", "Canada": "Ottawa", "Australia": "Canberra", "China": "Beijing",
    "India": "New Delhi|Delhi", "Brazil": "Brasilia|Brasília", "Mexico": "Mexico City", "Greece": "Athens",
    "Portugal": "Lisbon", "Ireland": "Dublin", "Norway": "Oslo", "Sweden": "Stockholm", "Poland": "Warsaw",
    "Austria": "Vienna", "Kenya": "Nairobi", "Argentina": "Buenos Aires", "Turkey": "Ankara",
    "South Korea": "Seoul",
}
ANTONYMS = {
    "hot": "cold|cool", "big": "small|little|tiny", "fast": "slow", "happy": "sad|unhappy",
    "light": "dark|heavy", "old": "new|young", "tall": "short", "rich": "poor", "early": "late",
    "open": "closed|shut", "full": "empty", "strong": "weak", "wet": "dry", "hard": "soft|easy",
    "loud": "quiet|soft", "clean": "dirty", "thick": "thin", "high": "low", "long": "short",
    "good": "bad|evil", "cheap": "expensive|costly", "young": "old", "near": "far|distant", "deep": "shallow",
}


@dataclass(frozen=True)
class LabelledPrompt:
    """A prompt, its task, the grader kind and the reference answer (``|`` separates accepted answers)."""

    prompt: str
    task: str
    grader: str
    reference: str
    choices: str = ""


def arithmetic(rng: random.Random, n: int) -> list[LabelledPrompt]:
    out: dict[str, LabelledPrompt] = {}
    while len(out) < n:
        a, b = rng.randint(2, 30), rng.randint(2, 30)
        if rng.random() < 0.5:
            item = LabelledPrompt(f"What is {a} + {b}? Reply with the number only.", "arithmetic",
                                  "numeric", str(a + b))
        else:
            a, b = max(a, b), min(a, b)
            item = LabelledPrompt(f"What is {a} - {b}? Reply with the number only.", "arithmetic",
                                  "numeric", str(a - b))
        out.setdefault(item.prompt, item)
    return list(out.values())


def capitals() -> list[LabelledPrompt]:
    return [LabelledPrompt(f"What is the capital of {country}? Reply with the city name only.", "capital",
                           "contains", city) for country, city in CAPITALS.items()]


def antonyms() -> list[LabelledPrompt]:
    return [LabelledPrompt(f"What is the opposite of the word '{word}'? Reply with one word.", "antonym",
                           "contains", opposite) for word, opposite in ANTONYMS.items()]


def parity(rng: random.Random, n: int) -> list[LabelledPrompt]:
    numbers = rng.sample(range(3, 200), n)
    return [LabelledPrompt(f"Is {k} an even or an odd number? Reply with one word.", "parity", "choice",
                           "even" if k % 2 == 0 else "odd", "even|odd") for k in numbers]


def build(seed: int = 16, per_task: int = 24) -> list[LabelledPrompt]:
    """The whole set: ``per_task`` prompts each of arithmetic and parity, plus every capital and antonym."""
    rng = random.Random(seed)
    return arithmetic(rng, per_task) + capitals() + antonyms() + parity(rng, per_task)
