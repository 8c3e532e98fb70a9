"""The token counts an expert reports, made safe before they price a request and count against a key.

An upstream is not trusted to report sane usage: a negative count would credit the key's budget and
TPM window (a cost of -$2,000,000 was seen), an absurd one would charge it for tokens no expert could
have produced. Counts are clamped to [0, what the expert could have processed]: the prompt to its
context window, the completion to its context window times ``n``. A clamp is logged as a warning.
"""
from __future__ import annotations

import logging

log = logging.getLogger("router_gateway.usage")
COUNTS = ("prompt_tokens", "completion_tokens")


def clean_usage(usage: dict | None, expert_name: str | None, context_window: int, choices: int | None,
                request_id: str) -> dict | None:
    """A copy of ``usage`` with its counts clamped; non-integer counts are dropped (cost unknown)."""
    if not isinstance(usage, dict):
        return None
    out = dict(usage)
    ceilings = {"prompt_tokens": context_window, "completion_tokens": context_window * max(1, choices or 1)}
    for name in COUNTS:
        value = usage.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            log.warning("expert %s reported %s=%r for %s: not an integer, ignored", expert_name, name,
                        _short(value), request_id)
            out.pop(name)
            continue
        clamped = min(max(value, 0), ceilings[name])
        if clamped != value:
            log.warning("expert %s reported %s=%d for %s: clamped to %d", expert_name, name, value,
                        request_id, clamped)
            out[name] = clamped
    if "total_tokens" in out:
        if all(isinstance(out.get(n), int) for n in COUNTS):
            out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
        else:
            out.pop("total_tokens")
    return out


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
