"""The affinity policy around a routing decision: look pins up, apply them, settle them afterwards.

``begin`` starts the store lookups before the prompt is embedded; ``apply`` runs on the ranked
decision: a pinned expert still among the eligible candidates goes first ("kept"), one that became
ineligible (down, circuit open, saturated, context window too small, no longer allowed) is replaced by
the policy's choice ("moved", with the reason); ``settle`` remembers the expert that actually answered
(a fallback answer moves the session too: that expert now holds the prefix cache).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable

from router_gateway.domain.config import Profile
from router_gateway.domain.errors import BadRequest, NoExpertAvailable
from router_gateway.state.sessions import (
    RESPONSE_TTL_S,
    AffinityInfo,
    AffinityStore,
    SessionRef,
    resolve,
)

RESPONSE_PREFIX = "resp:"


@dataclass
class PendingAffinity:
    """Lookups started for one request, resolved after ranking."""

    ref: SessionRef
    profile: Profile
    session: Awaitable[str | None] | str | None = None
    response: Awaitable[str | None] | str | None = None


class Affinity:
    """Session and response pins over an AffinityStore (one per gateway; it outlives reloads)."""

    def __init__(self, store: AffinityStore):
        self.store = store

    def begin(self, ref: SessionRef, profile: Profile) -> PendingAffinity:
        pending = PendingAffinity(ref, profile)
        if ref.response_id:
            pending.response = self.store.lookup(RESPONSE_PREFIX + ref.response_id)
        if ref.key and profile.affinity.enabled and not ref.opening:
            pending.session = self.store.lookup(ref.key)
        return pending

    async def apply(self, pending: PendingAffinity, decision, static_reasons: tuple[str, ...]) -> None:
        """Reorder ``decision.candidates`` for the pin and set ``decision.affinity``."""
        ref, settings = pending.ref, pending.profile.affinity
        pinned_session = await resolve(pending.session)
        holder = await resolve(pending.response)
        names = [c.expert for c in decision.candidates]
        if holder is not None:
            if holder not in names:
                raise _holder_unavailable(ref.response_id, holder, decision.ineligible.get(holder), static_reasons)
            _to_front(decision, holder)
            decision.affinity = AffinityInfo(ref, "pinned", settings.ttl_s, pinned_session or holder)
            return
        if not ref.key:
            return
        if not settings.enabled:
            decision.affinity = AffinityInfo(ref, "off")
            return
        info = AffinityInfo(ref, "new", settings.ttl_s, pinned_session)
        if pinned_session in names:
            info.state = "kept"
            _to_front(decision, pinned_session)
        elif pinned_session is not None:
            info.state = "moved"
            info.moved_reason = decision.ineligible.get(pinned_session, "no longer configured")
        decision.affinity = info

    def settle(self, decision, expert: str | None) -> None:
        """After an answer from ``expert``: pin the session to it (new, moved, fallback, or refresh a
        sliding TTL past its half-life; otherwise nothing is written)."""
        info = decision.affinity if decision is not None else None
        if info is None or expert is None or info.state == "off" or not info.ref.key:
            return
        if (info.state in ("new", "moved") or expert != info.pinned
                or self.store.remaining_s(info.ref.key) < info.ttl_s / 2):
            self.store.put(info.ref.key, expert, info.ttl_s)

    def remember_response(self, response_id: str, expert: str) -> None:
        """A Responses API answer with ``store`` on lives on ``expert``: later turns that name it go there."""
        self.store.put(RESPONSE_PREFIX + response_id, expert, RESPONSE_TTL_S)


def _to_front(decision, expert: str) -> None:
    if decision.candidates[0].expert == expert:
        return
    decision.candidates.sort(key=lambda c: c.expert != expert)  # stable: the rest keep their ranking
    decision.propensity, decision.explored = 1.0, False  # the session chose, deterministically


def _holder_unavailable(response_id: str | None, holder: str, reason: str | None,
                        static_reasons: tuple[str, ...]) -> Exception:
    why = reason or "not a candidate for this profile"
    message = f"previous_response_id {response_id!r} is held by expert {holder!r}, which cannot serve now: {why}"
    if reason is None or reason.startswith(static_reasons):
        return BadRequest(message, param="previous_response_id", code="previous_response_unavailable")
    return NoExpertAvailable(message, headers={"Retry-After": "1"})
