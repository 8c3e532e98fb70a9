"""Verifiers by the name a profile gives them (one place that knows every kind, so the verifier
modules need not import each other)."""
from __future__ import annotations

from typing import Any

from router_gateway.cascade.judge import JudgeVerifier
from router_gateway.cascade.learned import LearnedVerifier
from router_gateway.cascade.verifiers import (
    ConsistencyVerifier,
    LogprobVerifier,
    Verifier,
)


def make_verifier(kind: str, **options: Any) -> Verifier:
    """A verifier by profile name: logprob, consistency, learned (``path``) or judge (``expert``)."""
    if kind == "logprob":
        return LogprobVerifier(**options)
    if kind == "consistency":
        return ConsistencyVerifier(**options)
    if kind == "learned":
        return LearnedVerifier.load(options["path"])
    if kind == "judge":
        return JudgeVerifier(**options)
    raise ValueError(f"unknown verifier {kind!r} (logprob, consistency, learned, judge)")
