"""The judge verifier: an expert is asked whether an answer is right.

Self-contained on purpose (the learning loop has its own judge grader; they may be merged later). The
judge gets the question and the answer and must reply ``yes`` or ``no``; with token logprobs the
confidence is P(yes) / (P(yes) + P(no)) of its first token, without them 1.0 for yes and 0.0 for no.
``ask`` is the gateway's call to the judge expert: (chat body) -> response dict.
"""
from __future__ import annotations

import math
from typing import Any, Awaitable, Callable

from router_gateway.cascade.verifiers import Check, CheckContext, choice_text

PROMPT = ("Here is a question and a proposed answer. Is the final answer correct? Reply with one word: "
          "yes or no.\n\nQuestion:\n{question}\n\nProposed answer:\n{answer}")


def judge_body(question: str, answer: str, judge_model: str) -> dict[str, Any]:
    """The chat body that asks the judge (one token, greedy, with its top logprobs)."""
    return {"model": judge_model, "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": 5,
            "messages": [{"role": "user", "content": PROMPT.format(question=question[:4000], answer=answer[:4000])}]}


def judge_confidence(response: dict[str, Any]) -> float:
    """P(yes) from the judge's first-token logprobs, or its word when it sent none."""
    try:
        top = response["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        top = None
    if top:
        mass = {"yes": 0.0, "no": 0.0}
        for entry in top:
            word = str(entry.get("token", "")).strip().lower()
            if word in mass:
                mass[word] += math.exp(float(entry.get("logprob", -100.0)))
        if mass["yes"] + mass["no"] > 0:
            return mass["yes"] / (mass["yes"] + mass["no"])
    return 1.0 if choice_text(response).strip().lower().startswith("yes") else 0.0


class JudgeVerifier:
    name = "judge"
    asynchronous = True  # check_async: it asks an expert

    def __init__(self, expert: str, ask: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None):
        self.expert = expert
        self.ask = ask

    def upstream_params(self, body: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def check_async(self, prompt: str, response: dict[str, Any], context: CheckContext) -> Check:
        if self.ask is None:
            raise RuntimeError("judge verifier has no way to call its expert")
        verdict = await self.ask(judge_body(prompt, choice_text(response), self.expert))
        return Check(judge_confidence(verdict), detail={"judge": self.expert, "usage": verdict.get("usage")})
