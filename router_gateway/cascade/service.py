"""The glue between a cascade profile and the chat service (kept here so pipeline.py only calls in).

``cascade_forward`` replaces the forwarder call for a profile with a ``cascade:`` block; ``headers``,
``record_fields``/``total_cost`` and ``route_view`` add what the response headers, the request record
and ``/v1/route`` show.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, AsyncIterator

import orjson

from router_gateway.cascade.calibrate import threshold_for_quality, threshold_for_share
from router_gateway.cascade.registry import make_verifier
from router_gateway.cascade.runner import (
    CascadeResult,
    plan_tiers,
    replay_sse,
    run_cascade,
)
from router_gateway.cascade.settings import CascadeSettings
from router_gateway.forwarding.relay import Relay, StreamOutcome
from router_gateway.forwarding.result import ForwardResult
from router_gateway.forwarding.usage import clean_usage

_THRESHOLDS: dict[tuple[str, float, float | None, float | None], float] = {}
_LEARNED: dict[str, Any] = {}


def settings_for(runtime, decision) -> CascadeSettings | None:
    profile = runtime.config.profiles.get(decision.profile or "") if decision is not None else None
    return profile.cascade if profile is not None else None


def threshold_of(settings: CascadeSettings) -> float:
    """The fixed threshold, or one calibrated from the labelled rows (computed once per file version)."""
    if settings.calibrate is None:
        return float(settings.threshold)
    cal = settings.calibrate
    path = Path(cal.rows)
    key = (str(path.resolve()), path.stat().st_mtime, cal.quality_floor, cal.escalation_share)
    if key not in _THRESHOLDS:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [(float(r["confidence"]), float(r["correct"])) for r in csv.DictReader(f)]
        conf = [c for c, _ in rows]
        _THRESHOLDS[key] = (threshold_for_quality(conf, [y for _, y in rows], cal.quality_floor)
                            if cal.quality_floor is not None else threshold_for_share(conf, cal.escalation_share))
    return _THRESHOLDS[key]


def _verifier(settings: CascadeSettings, forwarder, deadline: float):
    if settings.verifier == "learned":
        if settings.artifact not in _LEARNED:
            _LEARNED[settings.artifact] = make_verifier("learned", path=settings.artifact)
        return _LEARNED[settings.artifact]
    if settings.verifier == "consistency":
        return make_verifier("consistency", samples=settings.samples)
    if settings.verifier == "judge":
        async def ask(body: dict[str, Any]) -> dict[str, Any]:
            result = await forwarder.forward([settings.judge], body, False, deadline)
            return orjson.loads(result.body)
        return make_verifier("judge", expert=settings.judge, ask=ask)
    return make_verifier("logprob")


async def cascade_forward(runtime, decision, body: dict[str, Any], stream: bool, deadline: float,
                          price) -> ForwardResult:
    """Forward a request of a cascade profile (see router_gateway.cascade.runner)."""
    settings = settings_for(runtime, decision)
    tiers = plan_tiers(decision.candidates, settings, decision.cost_weight)
    if stream and settings.stream_first_tier:
        return await runtime.forwarder.forward(tiers[:1], body, True, deadline)
    scores = {c.expert: c.score for c in decision.candidates}
    verifier = _verifier(settings, runtime.forwarder, deadline)

    def clean(expert: str, usage: dict | None, choices: int) -> dict | None:
        """A tier's usage clamped as any answer's is (services/usage.py), before it is priced and summed."""
        window = runtime.config.experts[expert].context_window if expert in runtime.config.experts else 0
        return clean_usage(usage, expert, window, choices, decision.request_id)

    result = await run_cascade(runtime.forwarder, tiers, body, decision.prompt_text, verifier,
                               threshold_of(settings), scores, deadline,
                               lambda expert, usage: price(runtime, expert, usage), clean)
    if stream:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = replay_sse(result.body, include_usage)
        result.stream = Relay(lambda outcome: _replay(events, outcome), outcome=StreamOutcome(usage=result.usage))
    return result


async def _replay(events: list[bytes], outcome: StreamOutcome) -> AsyncIterator[bytes]:
    """The chosen tier's answer, already complete, as a stream."""
    for event in events:
        yield event
    outcome.done = True


def is_cascade(result: ForwardResult | None) -> bool:
    return isinstance(result, CascadeResult)


def headers(result: ForwardResult | None) -> dict[str, str]:
    if not isinstance(result, CascadeResult):
        return {}
    out = {"x-router-cascade": result.header_value()}
    if result.cost_usd is not None:
        out["x-router-cost-usd"] = f"{result.cost_usd:.8f}"
    return out


def record_fields(result: ForwardResult | None, store_text: bool = True) -> dict[str, Any] | None:
    """The record's ``cascade`` part (tiers, confidences, the labelled pair), None for other results."""
    return result.record_fields(store_text) if isinstance(result, CascadeResult) else None


def total_cost(result: ForwardResult) -> float | None:
    """What every tier of a cascade result cost together (a cascade result only)."""
    assert isinstance(result, CascadeResult)
    return result.cost_usd


def route_view(runtime, decision) -> dict[str, Any]:
    """What ``/v1/route`` shows for a cascade profile: the planned tiers, the verifier and threshold."""
    settings = settings_for(runtime, decision)
    if settings is None:
        return {}
    return {"cascade": {"tiers": plan_tiers(decision.candidates, settings, decision.cost_weight),
                        "verifier": settings.verifier, "threshold": threshold_of(settings),
                        "threshold_source": "calibrated" if settings.calibrate else "fixed",
                        "stream_first_tier": settings.stream_first_tier}}
