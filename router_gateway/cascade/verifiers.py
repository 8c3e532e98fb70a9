"""Answer checks for cascade profiles: each says how sure it is, in [0, 1], that an answer is right.

One interface (``Verifier``): ``upstream_params(body)`` adds what the check needs to the expert call
(logprobs, ``n`` samples), ``check(prompt, response, context)`` returns a ``Check`` (the confidence and
which choice to return), and ``strip(response, client_body)`` removes what the client did not ask for.

- ``logprob``: token logprobs of the answer; confidence = exp(mean of the mean and the 10%-quantile
  token logprob): a geometric-mean token probability pulled down by the least sure tokens.
- ``consistency``: ``n`` samples in one call (they share one prefill); confidence = share of samples
  whose normalised final answer (number, choice letter, boxed text) is the most common one, and that
  sample is the one returned.
- ``learned``: a logistic model on the answer's hand-made features plus the router's estimate (see
  ``learned.py``); an artifact of arrays.
- ``judge``: an expert is asked whether the answer is right (``judge.py``).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from router_gateway.cascade.answer_features import normalise_final


@dataclass
class Check:
    """A verifier's verdict on one expert response."""

    confidence: float
    choice: int = 0  # which choice of the response to return if accepted
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckContext:
    """What the gateway knows besides the response: the router's estimate for this expert."""

    expert: str = ""
    predicted_score: float | None = None


class Verifier(Protocol):
    name: str
    #: declared, not probed: True for a verifier that awaits something (the judge asks an expert)
    #: and implements ``check_async``; False for one that implements ``check`` in plain code
    asynchronous: bool

    def upstream_params(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def check(self, prompt: str, response: dict[str, Any], context: CheckContext) -> Check: ...


def choice_text(response: dict[str, Any], index: int = 0) -> str:
    """The assistant text of one choice of a chat-completion response ('' when absent)."""
    try:
        content = response["choices"][index]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""
    return content if isinstance(content, str) else ""


def strip_extras(response: dict[str, Any], client_body: dict[str, Any], choice: int) -> dict[str, Any]:
    """The response as the client asked for it: only the chosen choice when the client did not ask
    for ``n`` (re-indexed 0), and no logprobs when it did not ask for them."""
    out = dict(response)
    choices = list(response.get("choices") or [])
    if int(client_body.get("n") or 1) == 1 and choices:
        picked = dict(choices[min(choice, len(choices) - 1)])
        picked["index"] = 0
        choices = [picked]
    if not client_body.get("logprobs"):
        choices = [{k: v for k, v in c.items() if k != "logprobs"} for c in choices]
    out["choices"] = choices
    return out


class LogprobVerifier:
    name = "logprob"
    asynchronous = False

    def __init__(self, quantile: float = 0.1):
        self.quantile = quantile

    def upstream_params(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"logprobs": True}

    def check(self, prompt: str, response: dict[str, Any], context: CheckContext) -> Check:
        values = token_logprobs(response)
        if values.size == 0:
            return Check(0.0, detail={"tokens": 0})
        mean = float(values.mean())
        low = float(np.quantile(values, self.quantile))
        return Check(math.exp(0.5 * (mean + low)),
                     detail={"tokens": int(values.size), "mean_logprob": round(mean, 4),
                             "low_logprob": round(low, 4)})


def token_logprobs(response: dict[str, Any], index: int = 0) -> np.ndarray:
    """The token logprobs of one choice (OpenAI ``logprobs.content[].logprob``), finite ones only."""
    try:
        content = response["choices"][index]["logprobs"]["content"] or []
    except (KeyError, IndexError, TypeError):
        return np.zeros(0)
    values = [t.get("logprob") for t in content if isinstance(t, dict)]
    arr = np.array([v for v in values if isinstance(v, (int, float))], dtype=np.float64)
    return np.maximum(arr[np.isfinite(arr)], -100.0) if arr.size else arr


class ConsistencyVerifier:
    name = "consistency"
    asynchronous = False

    def __init__(self, samples: int = 5, temperature: float = 0.7):
        self.samples = samples
        self.temperature = temperature

    def upstream_params(self, body: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {"n": max(self.samples, int(body.get("n") or 1))}
        if body.get("temperature") in (None, 0, 0.0):
            params["temperature"] = self.temperature  # greedy samples would agree trivially
        return params

    def check(self, prompt: str, response: dict[str, Any], context: CheckContext) -> Check:
        choices = response.get("choices") or []
        finals = [normalise_final(choice_text(response, i)) or choice_text(response, i).strip().lower()
                  for i in range(len(choices))]
        if not finals:
            return Check(0.0, detail={"samples": 0})
        top, count = Counter(finals).most_common(1)[0]
        return Check(count / len(finals), choice=finals.index(top),
                     detail={"samples": len(finals), "agree": count, "answer": top[:64]})
