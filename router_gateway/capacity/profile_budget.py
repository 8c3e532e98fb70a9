"""Profile budgets: a USD ceiling per UTC day and/or month on what one profile serves, whoever calls.

``profiles.<name>.budget: {usd_per_day, usd_per_month}``. The profile's spend is counted by the same
limiter as key budgets, under the subject ``profile:<name>`` (in Redis: ``spend:profile:<name>:<period>``,
so every replica sees the total), with the same holds for requests in flight, so a burst cannot
overspend it by more than one request's expected cost. Once spent, requests through the profile get
429 ``insufficient_quota``; a profile with ``pacing`` routes cheaper before that (capacity.pacing).

Only requests made *through* the profile count (``model: <profile>``); a request naming an expert
directly is not the profile's. A key's budget and its profile's both apply: the first one spent refuses.
"""
from __future__ import annotations

from router_gateway.capacity.pacing import PROFILE_PREFIX as PREFIX  # key ids are "key_<hex>": never "profile:..."
from router_gateway.domain.errors import RateLimited
from router_gateway.state.holds import Hold, expected_hold
from router_gateway.state.keys import ApiKey


def subject(profile_name: str) -> str:
    """The limiter's and the pacer's id for a profile's budget."""
    return PREFIX + profile_name


def budget_holder(profile_name: str, budget) -> ApiKey:
    """A limits-only record the limiter understands: the profile's budgets, no rates."""
    return ApiKey(id=subject(profile_name), hash="", name=profile_name,
                  budget_usd_day=budget.usd_per_day, budget_usd_month=budget.usd_per_month)


async def admit_profile(gateway, config, chat, body_size: int, reach: set[str] | None) -> Hold | None:
    """Refuse (429) when the request's profile has spent its budget; else hold its expected cost."""
    profile = config.profiles.get(chat.model) if isinstance(chat.model, str) else None
    if profile is None or profile.budget is None or gateway.limiter is None:
        return None
    holder = budget_holder(chat.model, profile.budget)
    hold = expected_hold(holder.id, chat, body_size, config, reach)
    try:
        return await gateway.limiter.admit(holder, hold)
    except RateLimited as exc:  # same status, code and Retry-After; the message names the profile
        exc.message = exc.message.replace(f"key {holder.id}", f"profile {chat.model}")
        raise


def settle_profile(gateway, hold: Hold | None, cost: float | None) -> None:
    """Replace the profile's hold with what the request cost (once, whatever the request's end)."""
    if hold is None:
        return
    name = hold.key_id[len(PREFIX):]
    gateway.settle_usage(ApiKey(id=hold.key_id, hash="", name=name), hold, 0, cost or 0.0)
