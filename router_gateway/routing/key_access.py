"""What a key may reach: its profile and expert allow-lists, applied to every way of naming a model.

A key restricted to profiles (``allowed_profiles``) may use those profiles, and may name an expert
directly only if that expert is reachable through one of them (listed in the profile's ``experts``,
or the profile lists none); the request must then fit that profile's ``max_messages`` and
``max_tokens``. A key restricted to experts (``allowed_experts``) reaches only those, whichever way
it asks, fallbacks included. Both restrictions together mean their intersection.
"""
from __future__ import annotations

from router_gateway.domain.errors import BadRequest, PermissionDenied
from router_gateway.domain.protocol import ChatRequest
from router_gateway.routing.service import check_profile_limits
from router_gateway.state.keys import ApiKey


def reachable_experts(key: ApiKey | None, config) -> set[str] | None:
    """The experts this key may be routed to; None means every expert."""
    if key is None:
        return None
    allowed = set(key.allowed_experts) if key.allowed_experts else None
    if key.allowed_profiles:
        via: set[str] = set()
        for name in key.allowed_profiles:
            profile = config.profiles.get(name)
            if profile is not None:
                via |= set(profile.experts or config.experts)
        allowed = via if allowed is None else allowed & via
    return allowed


def check_model_allowed(key: ApiKey, chat: ChatRequest, config) -> None:
    """403 for a profile outside the key's list, or an expert none of its profiles reaches; 400 when
    a named-expert request exceeds the limits of every allowed profile that reaches the expert."""
    model = chat.model
    if not key.allowed_profiles:
        return  # expert allow-lists are applied by routing (reachable_experts)
    if model in config.profiles:
        if model not in key.allowed_profiles:
            raise PermissionDenied(f"this API key may not use profile '{model}'", param="model")
        return
    if model not in config.experts:
        return  # routing answers 404 for an unknown model
    through = [config.profiles[p] for p in key.allowed_profiles if p in config.profiles
               and (not config.profiles[p].experts or model in config.profiles[p].experts)]
    if not through:
        raise PermissionDenied(f"this API key may not use expert '{model}': none of its profiles "
                               f"({', '.join(key.allowed_profiles)}) routes to it", param="model")
    first: BadRequest | None = None
    for profile in through:
        try:
            check_profile_limits(profile, chat)
            return
        except BadRequest as exc:
            first = first or exc
    assert first is not None
    raise first
