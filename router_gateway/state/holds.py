"""Holds: what an admitted request reserves against its key's budgets and TPM until it ends.

Without them a budget check sees only finished requests, so a burst of concurrent requests all pass
it and the key overspends by the burst (8.5x a $0.0001/day budget with 60 at once). A request is
admitted while spend plus the holds of requests in flight stays under the limit; it then holds its
expected cost and tokens, and on completion (success, error, cancel, end of stream) the hold is
replaced by what the expert reported. Overspend is so bounded by one request's expected cost per
replica (in total when replicas share Redis), as long as requests stay within their estimate.

The estimate errs high: the prompt is ~4 bytes of JSON body a token, the completion is the request's
``max_completion_tokens`` / ``max_tokens`` (else the profile's ``expected_output_tokens``, 256 for a
named expert), times ``n``, priced at the dearest expert the request could reach (fallbacks too).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from router_gateway.domain.protocol import ChatRequest, estimate_prompt_tokens

#: a hold outlives its request only when the replica holding it died; it then lapses this long after
#: the request deadline
HOLD_SLACK_S = 60.0
DIRECT_OUTPUT_TOKENS = 256  # as routing assumes for a named expert


@dataclass
class Hold:
    """One request's reservation against its key."""

    key_id: str
    usd: float = 0.0
    tokens: int = 0
    ttl_s: float = 900.0 + HOLD_SLACK_S
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    expires: float = 0.0  # set at admission (epoch seconds)
    shared: bool = False  # held in Redis, else in this process
    settled: bool = False


def expected_hold(key_id: str, chat: ChatRequest, body_size: int, config, reach: set[str] | None) -> Hold:
    """The hold for a request: its expected tokens and the cost at the dearest expert it may reach."""
    prompt = estimate_prompt_tokens(body_size, 0)
    profile = config.profiles.get(chat.model)
    if profile is not None:
        experts = list(profile.experts or config.experts)
        default_output = profile.expected_output_tokens
    elif chat.model in config.experts:
        experts = [chat.model, *config.experts[chat.model].fallbacks]
        default_output = DIRECT_OUTPUT_TOKENS
    else:
        experts, default_output = [], DIRECT_OUTPUT_TOKENS  # routing answers 404: nothing is spent
    if reach is not None:
        experts = [e for e in experts if e in reach]
    output = (chat.max_completion_tokens or chat.max_tokens or default_output) * (chat.n or 1)
    usd = max((config.experts[e].price.cost(prompt, output) for e in experts), default=0.0)
    return Hold(key_id, usd=usd, tokens=prompt + output,
                ttl_s=config.server.request_deadline_s + HOLD_SLACK_S)
