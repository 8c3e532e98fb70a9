"""Hand-made features of one (prompt, answer) pair that say whether the answer is likely right.

Pure Python + numpy, so the serving path computes them in microseconds. What they look at:

- arithmetic: every ``<<expr=result>>`` annotation (GSM8K-style) and every inline ``a op b = c`` is
  recomputed; a wrong step is the strongest single sign of a wrong final answer;
- the final answer: after ``####``, in ``\\boxed{}``, or the last number; whether it is an integer
  (GSM8K answers are), whether it is the result of a computation shown, its magnitude;
- coverage: how many of the prompt's numbers the answer uses;
- shape: length, lines, hedging words ("approximately", "assume", "however"...), a cut-off answer.

The names in ``FEATURE_NAMES`` are part of a learned verifier's artifact: a verifier trained on one
list refuses to load against another.
"""
from __future__ import annotations

import ast
import math
import operator
import re

import numpy as np

_NUM = r"-?\$?\d[\d,]*(?:\.\d+)?"
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
_ANNOTATION = re.compile(r"<<([^<>=]{1,200})=([^<>]{1,60})>>")
_INLINE = re.compile(rf"((?:{_NUM}\s*[-+*/x×÷]\s*)+{_NUM})\s*=\s*\$?\s*({_NUM})")
_FINAL_HASH = re.compile(r"####\s*\$?\s*(" + _NUM + ")")
_BOXED = re.compile(r"\\boxed\{+([^{}]*)\}+")
_CHOICE = re.compile(r"^\s*\(?([A-J])\)?\s*$")
_HEDGES = ("approximately", "approx", "assume", "assuming", "however", "but wait", "not possible",
           "cannot", "can't", "unclear", "round", "estimate", "let's reconsider", "mistake", "actually",
           "i'm not sure", "not sure", "it seems", "might", "probably", "sorry")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Mod: operator.mod,
        ast.FloorDiv: operator.floordiv}

FEATURE_NAMES = (
    "log_chars", "log_lines", "n_annotations", "annotation_wrong", "annotation_wrong_share",
    "n_inline", "inline_wrong", "inline_wrong_share", "any_wrong", "has_hash_final", "has_boxed",
    "has_final", "final_is_integer", "final_negative", "final_log_abs", "final_from_computation",
    "prompt_numbers_used", "prompt_numbers_share", "n_answer_numbers_log", "hedges", "hedge_any",
    "cut_off", "choice_letter", "prompt_log_chars", "answer_prompt_ratio", "percent_in_prompt",
    "fraction_in_answer",
)


def parse_number(text: str) -> float | None:
    """A number written as in answers ("$1,200", "3.5", "-4"), or None."""
    cleaned = text.replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def safe_eval(expr: str) -> float | None:
    """The value of a plain arithmetic expression (numbers, + - * / ** % //, brackets), or None.

    Never executes anything but arithmetic: the expression is parsed and walked node by node."""
    expr = expr.replace(",", "").replace("$", "").replace("×", "*").replace("÷", "/")
    expr = re.sub(r"(?<=[\d)\s])x(?=[\s\d(])", "*", expr).replace("^", "**").strip()
    if not expr or len(expr) > 200:
        return None
    try:
        tree = ast.parse(expr, mode="eval")
        value = _walk(tree.body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, TypeError, RecursionError):
        return None
    return float(value) if value is not None and math.isfinite(value) else None


def _walk(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _walk(node.left), _walk(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 12 or abs(left) > 1e6):
            raise ValueError("power too large")
        return _OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_walk(node.operand))
    raise ValueError("not arithmetic")


def _close(a: float, b: float) -> bool:
    """Equal up to the rounding an answer would show (2 decimals, or 0.01% of big numbers)."""
    return abs(a - b) <= max(0.011, 1e-4 * abs(b))


def _recompute(pairs: list[tuple[str, str]]) -> tuple[int, int]:
    """(how many ``expr = result`` pairs can be checked, how many of those compute wrong)."""
    n = wrong = 0
    for expr, result in pairs:
        value, shown = safe_eval(expr), parse_number(result)
        if value is None or shown is None:
            continue
        n += 1
        wrong += not _close(value, shown)
    return n, wrong


def check_annotations(answer: str) -> tuple[int, int]:
    """(number of ``<<expr=result>>`` annotations, how many of them compute wrong)."""
    return _recompute(_ANNOTATION.findall(answer))


def check_inline(answer: str) -> tuple[int, int]:
    """(number of inline ``a op b = c`` computations outside annotations, how many are wrong)."""
    return _recompute(_INLINE.findall(_ANNOTATION.sub(" ", answer)))


def final_answer(answer: str) -> str | None:
    """The answer's final answer as text: after ``####``, in the last ``\\boxed{}``, or the last number."""
    m = _FINAL_HASH.findall(answer)
    if m:
        return m[-1]
    boxed = _BOXED.findall(answer)
    if boxed:
        return boxed[-1].strip()
    nums = _NUMBER.findall(answer)
    return nums[-1] if nums else None


def normalise_final(answer: str) -> str | None:
    """A comparable form of the final answer: a canonical number, a choice letter, or lowercased text."""
    final = final_answer(answer)
    if final is None:
        return None
    value = parse_number(final)
    if value is not None:
        return f"{round(value, 6):g}"
    choice = _CHOICE.match(final)
    if choice:
        return choice.group(1).upper()
    text = re.sub(r"\s+", " ", final.strip().lower()).strip(" .")
    return text or None


def _numbers(text: str) -> list[float]:
    return [v for v in (parse_number(t) for t in _NUMBER.findall(text)) if v is not None]


def features(prompt: str, answer: str) -> np.ndarray:
    """The ``FEATURE_NAMES`` vector (float64) of one prompt and answer."""
    n_ann, wrong_ann = check_annotations(answer)
    n_inl, wrong_inl = check_inline(answer)
    final_text = final_answer(answer)
    final = parse_number(final_text) if final_text is not None else None
    computed = {round(v, 4) for v in (parse_number(r) for _, r in _ANNOTATION.findall(answer)) if v is not None}
    computed |= {round(v, 4) for v in (parse_number(r) for _, r in _INLINE.findall(answer)) if v is not None}
    prompt_nums = {round(v, 4) for v in _numbers(prompt)}
    answer_nums = {round(v, 4) for v in _numbers(answer)}
    used = len(prompt_nums & answer_nums)
    lower = answer.lower()
    hedges = sum(lower.count(h) for h in _HEDGES)
    stripped = answer.rstrip()
    return np.array([
        math.log1p(len(answer)), math.log1p(answer.count("\n")), math.log1p(n_ann), float(wrong_ann),
        wrong_ann / n_ann if n_ann else 0.0, math.log1p(n_inl), float(wrong_inl),
        wrong_inl / n_inl if n_inl else 0.0, float(wrong_ann + wrong_inl > 0),
        float(bool(_FINAL_HASH.search(answer))), float(bool(_BOXED.search(answer))),
        float(final_text is not None),
        float(final is not None and abs(final - round(final)) < 1e-9),
        float(final is not None and final < 0),
        math.log1p(abs(final)) if final is not None else 0.0,
        float(final is not None and round(final, 4) in computed),
        math.log1p(used), used / len(prompt_nums) if prompt_nums else 0.0,
        math.log1p(len(answer_nums)), math.log1p(hedges), float(hedges > 0),
        float(bool(stripped) and stripped[-1] not in ".!?)}]0123456789*\"'`>"),
        float(final_text is not None and bool(_CHOICE.match(final_text))),
        math.log1p(len(prompt)), math.log1p(len(answer)) - math.log1p(len(prompt)),
        float("%" in prompt or "percent" in prompt.lower()),
        float(bool(re.search(r"\d/\d", answer))),
    ], dtype=np.float64)


def feature_matrix(prompts: list[str], answers: list[str]) -> np.ndarray:
    """(n, len(FEATURE_NAMES)) features of many pairs."""
    if not prompts:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.stack([features(p, a) for p, a in zip(prompts, answers)])
