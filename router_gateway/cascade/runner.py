"""Running a cascade profile: ask a cheaper expert, check its answer, escalate when unsure.

Tiers come from the routing decision's candidates: tier 1 is the cheapest candidate whose predicted
score clears ``floor`` (or the router's choice at ``first_tier_cost_weight_factor`` x the cost weight),
then the remaining candidates in the router's order, at most ``max_tiers`` calls in all, within the
request's deadline. Every tier but the last is called with what its verifier needs (logprobs, ``n``
samples) and its answer accepted iff the confidence >= the threshold; the last tier's answer is
accepted unchecked. A tier that fails (timeout, 5xx) counts as unsure: the cascade moves on.

Streams: the tiers are called without streaming and the accepted answer is replayed as SSE, so the
client's first byte waits for the whole first-tier answer and its check (the TTFT cost); with
``stream_first_tier`` tier 1 streams straight through, unchecked (no escalation).

Accounting: every tier's tokens and cost (and a judge's) are summed into the request's usage and cost;
``tiers`` lists each call with its confidence for the headers and the log record, and an escalated
request carries ``pair``: two experts' answers on one prompt scored by the verifier, a labelled row
for router training.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from router_gateway.cascade.settings import CascadeSettings
from router_gateway.cascade.verifiers import CheckContext, choice_text, strip_extras
from router_gateway.domain.errors import GatewayError
from router_gateway.forwarding.result import ForwardResult


@dataclass
class TierRecord:
    expert: str
    outcome: str  # accepted | escalated | failed | final | judge | returned (escalated, later tiers failed)
    confidence: float | None = None
    usage: dict | None = None
    cost_usd: float | None = None
    ms: float = 0.0
    verifier_ms: float | None = None
    answer: str = ""  # the text of the choice the check looked at (logged only with store_prompts)

    def as_dict(self) -> dict[str, Any]:
        return {"expert": self.expert, "outcome": self.outcome,
                "confidence": None if self.confidence is None else round(self.confidence, 4),
                "prompt_tokens": (self.usage or {}).get("prompt_tokens"),
                "completion_tokens": (self.usage or {}).get("completion_tokens"),
                "cost_usd": self.cost_usd, "ms": round(self.ms, 2),
                "verifier_ms": None if self.verifier_ms is None else round(self.verifier_ms, 4)}


@dataclass
class CascadeResult(ForwardResult):
    """The accepted answer plus every tier's record; usage and cost are the sums over the tiers."""

    tiers: list[TierRecord] = field(default_factory=list)
    cost_usd: float | None = None
    threshold: float = 0.0
    verifier: str = ""

    def record_fields(self, store_text: bool = True) -> dict[str, Any]:
        """What the log record carries (``logs export`` writes it as is); with ``store_text`` also
        every tier's answer, so a learned verifier can be trained from logs."""
        out: dict[str, Any] = {"verifier": self.verifier, "threshold": self.threshold,
                               "tiers": [t.as_dict() for t in self.tiers]}
        if store_text:
            out["answers"] = {t.expert: t.answer for t in self.tiers if t.outcome not in ("failed", "judge")}
        answered = [t for t in self.tiers if t.outcome not in ("failed", "judge")]
        if len(answered) > 1:  # escalated: two experts on one prompt, scored by the check
            out["pair"] = {t.expert: (t.confidence if t.outcome != "final" else None) for t in answered}
            out["pair_preferred"] = answered[-1].expert
        return out

    def header_value(self) -> str:
        return ",".join(f"{t.expert}:{'-' if t.confidence is None else f'{t.confidence:.3f}'}:{t.outcome}"
                        for t in self.tiers)


def plan_tiers(candidates: list, settings: CascadeSettings, cost_weight: float) -> list[str]:
    """Experts to try in order (see the module docstring)."""
    if not candidates:
        return []
    if settings.first_tier == "cheapest-above-floor":
        above = [c for c in candidates if c.score >= settings.floor] or candidates[:1]
        first = min(above, key=lambda c: (c.cost_usd, -c.score)).expert
    else:
        dearest = max(c.cost_usd for c in candidates) or 1.0
        weight = cost_weight * settings.first_tier_cost_weight_factor
        first = max(candidates, key=lambda c: (c.score - weight * c.cost_usd / dearest, -c.cost_usd)).expert
    rest = [c.expert for c in candidates if c.expert != first]
    return [first] + rest[: settings.max_tiers - 1]


def _add_usage(total: dict[str, int], usage: dict | None) -> None:
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = (usage or {}).get(key)
        if isinstance(value, int):
            total[key] = total.get(key, 0) + value


async def run_cascade(forwarder, tiers: list[str], body: dict[str, Any], prompt: str, verifier,
                      threshold: float, scores: dict[str, float], deadline: float,
                      price: Callable[[str, dict | None], float | None],
                      clean: Callable[[str, dict | None, int], dict | None] = lambda e, u, n: u) -> CascadeResult:
    """Call the tiers in order until one answer is accepted. When the later tiers fail, the last
    answer that did arrive is returned (outcome ``returned``: it was paid for); with none, the last error."""
    records: list[TierRecord] = []
    usage: dict[str, int] = {}
    attempts: list = []
    last_error: GatewayError | None = None
    kept = None  # (result, response, choice) of the last escalated answer
    for i, expert in enumerate(tiers):
        final = i == len(tiers) - 1
        payload = dict(body, stream=False)
        payload.pop("stream_options", None)
        if not final:
            payload.update(verifier.upstream_params(body))
        started = time.perf_counter()
        try:
            result = await forwarder.forward([expert], payload, False, deadline)
        except GatewayError as exc:
            if getattr(exc, "status", 500) < 500 and not getattr(exc, "attempts", None):
                raise  # the request itself is bad: escalating would not help
            attempts += getattr(exc, "attempts", []) or []
            records.append(TierRecord(expert, "failed", ms=(time.perf_counter() - started) * 1e3))
            last_error = exc
            continue
        attempts += result.attempts
        response = orjson.loads(result.body)
        tier_usage = clean(expert, result.usage, int(payload.get("n") or 1))
        tier = TierRecord(expert, "final", usage=tier_usage, cost_usd=price(expert, tier_usage),
                          ms=(time.perf_counter() - started) * 1e3, answer=choice_text(response))
        records.append(tier)
        _add_usage(usage, tier_usage)
        choice = 0
        if not final:
            check_started = time.perf_counter()
            check = await _check(verifier, prompt, response, CheckContext(expert, scores.get(expert)))
            tier.verifier_ms = (time.perf_counter() - check_started) * 1e3
            tier.confidence, choice = check.confidence, check.choice
            tier.answer = choice_text(response, choice)
            _charge_judge(check, records, usage, price, clean)
            tier.outcome = "accepted" if check.confidence >= threshold else "escalated"
            if tier.outcome == "escalated":
                kept = (result, response, choice, tier)
                continue
        return _finish(result, response, choice, body, usage, records, threshold, verifier, attempts)
    if kept is not None:
        result, response, choice, tier = kept
        tier.outcome = "returned"
        return _finish(result, response, choice, body, usage, records, threshold, verifier, attempts)
    raise last_error or GatewayError("no cascade tier answered")


def _charge_judge(check, records: list[TierRecord], usage: dict[str, int], price, clean) -> None:
    """A judge's call is charged like a tier's."""
    judge = (check.detail or {}).get("judge")
    if judge:
        judge_usage = clean(judge, check.detail.get("usage"), 1)
        records.append(TierRecord(judge, "judge", usage=judge_usage, cost_usd=price(judge, judge_usage)))
        _add_usage(usage, judge_usage)


def _finish(result: ForwardResult, response: dict[str, Any], choice: int, body: dict[str, Any],
            usage: dict[str, int], records: list[TierRecord], threshold: float, verifier,
            attempts: list) -> CascadeResult:
    answer = strip_extras(response, body, choice)
    if usage:
        answer["usage"] = dict(answer.get("usage") or {}, **usage)
    costs = [t.cost_usd for t in records if t.cost_usd is not None]
    return CascadeResult(result.expert, result.status, attempts, body=orjson.dumps(answer), usage=usage or None,
                         tiers=records, cost_usd=sum(costs) if costs else None, threshold=threshold,
                         verifier=getattr(verifier, "name", ""))


async def _check(verifier, prompt: str, response: dict[str, Any], context: CheckContext):
    if verifier.asynchronous:
        return await verifier.check_async(prompt, response, context)
    return verifier.check(prompt, response, context)


def replay_sse(body: bytes, include_usage: bool) -> list[bytes]:
    """The accepted answer as chat.completion.chunk events (role and content, finish, usage, DONE)."""
    data = orjson.loads(body)
    base = {"id": data.get("id"), "object": "chat.completion.chunk", "created": data.get("created"),
            "model": data.get("model")}
    events = []
    for choice in data.get("choices") or []:
        message = choice.get("message") or {}
        delta = {"role": message.get("role", "assistant"), "content": choice_text(data, choice.get("index", 0))}
        events.append({**base, "choices": [{"index": choice.get("index", 0), "delta": delta,
                                            "finish_reason": None}]})
        events.append({**base, "choices": [{"index": choice.get("index", 0), "delta": {},
                                            "finish_reason": choice.get("finish_reason")}]})
    if include_usage and data.get("usage"):
        events.append({**base, "choices": [], "usage": data["usage"]})
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
