"""The routing service: request -> ranked experts with scores, costs and reasons.

Text to embed (``prompt_text``) -> embedding (batched, cached) -> router scores -> policy:
utility = quality - cost_weight * normalised expected cost, masked by eligibility.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from router_gateway.capacity.load import CapacityBook
from router_gateway.capacity.pacing import PacingDecision
from router_gateway.domain.config import Expert, GatewayConfig, Profile
from router_gateway.domain.errors import (
    BadRequest,
    ModelNotFound,
    NoExpertAvailable,
    RateLimited,
)
from router_gateway.domain.protocol import (
    ChatRequest,
    estimate_prompt_tokens,
    required_capabilities,
)
from router_gateway.embedding.batcher import BatchingEmbedder
from router_gateway.embedding.text import prompt_text
from router_gateway.routing.affinity import Affinity
from router_gateway.routing.eligibility import static_ineligibility
from router_gateway.routing.router_set import LoadedRouter, score_experts, score_rows
from router_gateway.routing.score_batcher import ScoreBatcher
from router_gateway.state.sessions import SessionRef
from routers.policy import rank_experts, unit_hash

SATURATED = "saturated"  # the prefix of ExpertState's saturation reason
#: reasons that depend on the request or the key, not on the expert's condition
REQUEST_REASONS = ("not in the profile's expert list", "not allowed for this API key", "context window",
                   "lacks capability")


class ExpertHealth(Protocol):
    """What routing asks of the health / load tracker (see services.expert_state)."""

    def unavailable_reason(self, expert: str, config: Expert, stream: bool = False) -> str | None: ...

    def load_penalty(self, expert: str, config: Expert) -> float: ...


@dataclass
class Candidate:
    """One eligible expert in the ranking."""

    expert: str
    score: float
    cost_usd: float
    utility: float
    wait_s: float | None = None  # expected queueing at the expert's engine (engine metrics), if known

    def as_dict(self) -> dict[str, Any]:
        out = {"expert": self.expert, "score": round(self.score, 6), "cost_usd": self.cost_usd,
               "utility": round(self.utility, 6)}
        if self.wait_s is not None:
            out["expected_wait_s"] = round(self.wait_s, 4)
        return out


@dataclass
class Decision:
    """The routing decision for one request."""

    request_id: str
    profile: str | None
    router: str | None
    candidates: list[Candidate]
    ineligible: dict[str, str]
    propensity: float = 1.0
    explored: bool = False
    cost_weight: float = 0.0
    prompt_text: str = ""
    prompt_tokens_est: int = 0
    embed_ms: float = 0.0
    route_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    affinity: Any = None  # services.sessions.AffinityInfo when the request belongs to a session

    @property
    def chosen(self) -> str:
        return self.candidates[0].expert

    def as_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "profile": self.profile, "router": self.router,
                "chosen": self.candidates[0].expert if self.candidates else None,
                "propensity": self.propensity, "explored": self.explored, "cost_weight": self.cost_weight,
                "candidates": [c.as_dict() for c in self.candidates], "ineligible": self.ineligible,
                "prompt_tokens_est": self.prompt_tokens_est,
                "affinity": self.affinity.as_dict() if self.affinity else None,
                "timing_ms": {"embed": round(self.embed_ms, 3), "route": round(self.route_ms, 3)},
                **self.extra}


class RoutingService:
    """Decides which experts serve a request; holds no per-request state."""

    def __init__(self, config: GatewayConfig, routers: dict[str, LoadedRouter],
                 embedder: BatchingEmbedder | None, health: ExpertHealth, capacity: CapacityBook | None = None,
                 affinity: Affinity | None = None, on_score_batch: Callable[[int], None] | None = None):
        self.config = config
        self.affinity = affinity
        self.routers = routers
        self.embedder = embedder
        self.health = health
        self.capacity = capacity  # engine-metrics queueing estimates (None: in-flight counts only)
        self._names = list(config.experts)
        #: one batcher per router that scores rows independently (routing/score_batcher.py)
        self._batchers = {name: ScoreBatcher(lambda X, lr=loaded: score_rows(lr, X, config), on_batch=on_score_batch)
                          for name, loaded in routers.items() if loaded.router.batches_scores}

    def resolve_model(self, model: str) -> tuple[Profile | None, str | None]:
        """``model`` names a profile (routed) or an expert (direct); anything else is a 404."""
        if model in self.config.profiles:
            return self.config.profiles[model], None
        if model in self.config.experts:
            return None, model
        raise ModelNotFound(f"The model '{model}' does not exist: use a profile "
                            f"({', '.join(self.config.profiles)}) or an expert name", param="model")

    async def decide(self, request: ChatRequest, body_size: int, request_id: str,
                     cost_weight_header: str | None = None,
                     allowed_experts: set[str] | None = None,
                     pace: Callable[[Profile, float], PacingDecision | None] | None = None,
                     session: SessionRef | None = None) -> Decision:
        profile, direct = self.resolve_model(request.model)
        # prompt_text reads only role and content: no need to model_dump every message
        text = prompt_text([{"role": m.role, "content": m.content} for m in request.messages])
        tokens = estimate_prompt_tokens(body_size, len(text))
        if direct is not None:
            return self._direct(direct, request, tokens, request_id, allowed_experts, text)
        assert profile is not None
        check_profile_limits(profile, request)
        cost_weight = _cost_weight(cost_weight_header, profile.cost_weight)
        paced = pace(profile, cost_weight) if pace is not None and profile.pacing is not None else None
        if paced is not None:
            cost_weight = paced.effective
        router_name, arm_share = canary_arm(profile, request_id)
        loaded = self.routers[router_name]
        # the pin lookups start now and run while the prompt is embedded (a Redis GET costs no wait)
        pending = self.affinity.begin(session, profile) if self.affinity and session else None
        t0 = time.perf_counter()
        x = await self._embedding(loaded, text, request_id)
        t1 = time.perf_counter()
        batcher = self._batchers.get(router_name)
        scores = await batcher.score(x) if batcher is not None else score_experts(loaded, x, self.config)
        chooser = _bandit_chooser(loaded, x, request_id, self._names)
        decision = self._rank(scores, request, profile, tokens, cost_weight, request_id, allowed_experts,
                              chooser)
        if pending is not None:
            await self.affinity.apply(pending, decision, REQUEST_REASONS)
        decision.router, decision.prompt_text = router_name, text
        if arm_share < 1.0:  # a canary runs: the arm was drawn too, so it is part of the propensity
            decision.propensity *= arm_share
            decision.extra["canary"] = {"router": profile.canary.router, "share": profile.canary.share,
                                        "arm": "canary" if router_name == profile.canary.router else "live"}
        if paced is not None:
            decision.extra["pacing"] = paced.as_dict()
        decision.embed_ms, decision.route_ms = (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3
        return decision

    async def _embedding(self, loaded: LoadedRouter, text: str, request_id: str) -> np.ndarray:
        dim = loaded.router.n_features_in_
        if loaded.needs_embedding:
            if self.embedder is None:
                raise NoExpertAvailable("the prompt embedder is not loaded")
            return await self.embedder.embed_one(text)
        if not loaded.router.stochastic:
            return np.zeros(dim, dtype=np.float32)  # baselines ignore the embedding
        # a stochastic router draws from its input: hand it a vector derived from the request id,
        # a different draw per request and the same draw for a replayed request.
        seed = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "little")
        return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)

    def _rank(self, scores: np.ndarray, request: ChatRequest, profile: Profile, tokens: int,
              cost_weight: float, request_id: str, allowed: set[str] | None, chooser=None) -> Decision:
        out_tokens = request.max_completion_tokens or request.max_tokens or profile.expected_output_tokens
        out_tokens = min(out_tokens, profile.expected_output_tokens * 4)
        costs = np.array([e.price.cost(tokens, out_tokens) for e in self.config.experts.values()])
        ineligible = self._ineligible(request, tokens, profile, allowed)
        eligible = np.array([n not in ineligible for n in self._names])
        if not eligible.any():
            raise nobody_eligible(ineligible)
        norm = costs / max(costs[eligible].max(), 1e-12)
        penalty = np.array([self.health.load_penalty(n, e) for n, e in self.config.experts.items()])
        waits = self._waits()
        if waits is not None and profile.latency_weight > 0:
            # brownout: a request leaves a queueing expert when what it would lose there in predicted
            # quality (net of cost) is less than latency_weight x the extra wait, so as a queue grows
            # the requests with the smallest predicted loss move first
            penalty = penalty + profile.latency_weight * waits
        ranking = rank_experts(scores - penalty, norm, cost_weight, eligible)
        order = list(ranking.order)
        propensity, explored = 1.0, False
        if chooser is not None:  # the router explores itself (bandit): its choice leads, with its propensity
            pick, propensity = chooser(eligible, norm, cost_weight)
            explored = pick != order[0]
            order = [pick] + [i for i in order if i != pick]
        elif profile.explore > 0 and len(order) > 1:
            order, propensity, explored = _explore(order, profile.explore, request_id)
        candidates = [Candidate(self._names[i], float(scores[i]), float(costs[i]), float(ranking.utility[i]),
                                None if waits is None or self._names[i] not in self.capacity.known()
                                else float(waits[i]))
                      for i in order]
        return Decision(request_id, request.model, None, candidates, ineligible, propensity, explored,
                        cost_weight, prompt_tokens_est=tokens)

    def _waits(self) -> np.ndarray | None:
        """Expected queueing seconds per expert (0 where unknown); None when no expert reports any."""
        if self.capacity is None or not self.capacity.known():
            return None
        return np.array([self.capacity.expected_wait_s(n) for n in self._names])

    def _ineligible(self, request: ChatRequest, tokens: int, profile: Profile,
                    allowed: set[str] | None) -> dict[str, str]:
        needs = required_capabilities(request)
        want = request.max_completion_tokens or request.max_tokens or 0
        reasons: dict[str, str] = {}
        for name, expert in self.config.experts.items():
            if profile.experts and name not in profile.experts:
                reasons[name] = "not in the profile's expert list"
            elif allowed is not None and name not in allowed:
                reasons[name] = "not allowed for this API key"
            elif tokens + want > expert.context_window:
                reasons[name] = f"context window {expert.context_window} < ~{tokens + want} tokens"
            elif needs - set(expert.capabilities):
                reasons[name] = f"lacks capability {', '.join(sorted(needs - set(expert.capabilities)))}"
            else:
                why = self.health.unavailable_reason(name, expert, stream=bool(request.stream))
                if why:
                    reasons[name] = why
        return reasons

    def _direct(self, name: str, request: ChatRequest, tokens: int, request_id: str,
                allowed: set[str] | None, text: str) -> Decision:
        if allowed is not None and name not in allowed:
            from router_gateway.domain.errors import PermissionDenied
            raise PermissionDenied(f"this API key may not use expert '{name}'", param="model")
        expert = self.config.experts[name]
        out_tokens = request.max_completion_tokens or request.max_tokens or 256
        chain = [name] + [f for f in expert.fallbacks if f != name]
        ineligible = {}
        candidates = []
        for n in chain:
            why = self.health.unavailable_reason(n, self.config.experts[n], stream=bool(request.stream)) \
                if n != name else None
            if allowed is not None and n not in allowed:  # a fallback must not widen the key's reach
                why = "not allowed for this API key"
            if why:
                ineligible[n] = why
                continue
            candidates.append(Candidate(n, 1.0 if n == name else 0.0,
                                        self.config.experts[n].price.cost(tokens, out_tokens), 0.0))
        return Decision(request_id, None, None, candidates, ineligible, prompt_tokens_est=tokens,
                        prompt_text=text)


def check_profile_limits(profile: Profile, request: ChatRequest) -> None:
    """400 when the request exceeds the profile's max_messages or max_tokens (also applied to a key
    restricted to profiles that names an expert: see key_access)."""
    if len(request.messages) > profile.max_messages:
        raise BadRequest(f"too many messages: {len(request.messages)} > {profile.max_messages}",
                         param="messages")
    asked = request.max_completion_tokens or request.max_tokens
    if profile.max_tokens and asked and asked > profile.max_tokens:
        raise BadRequest(f"max_tokens {asked} exceeds this profile's limit {profile.max_tokens}",
                         param="max_tokens")


def nobody_eligible(reasons: dict[str, str]) -> NoExpertAvailable | RateLimited | BadRequest:
    """400 when every reason is static (services.ineligibility: a retry cannot help); 429 when the
    experts that could serve are all saturated (retry soon, do not queue without bound); 503 otherwise.
    429 and 503 carry Retry-After."""
    detail = "; ".join(f"{k}: {v}" for k, v in reasons.items())
    busy = [r for r in reasons.values() if r.startswith(SATURATED)]
    fixed = [r for r in reasons.values() if r.startswith(REQUEST_REASONS)]
    if reasons and len(fixed) == len(reasons):
        return static_ineligibility(reasons)
    if busy and len(busy) + len(fixed) == len(reasons):
        return RateLimited(f"every expert that can serve this request is at capacity: {detail}",
                           code="experts_saturated", headers={"Retry-After": "1"})
    return NoExpertAvailable(f"no expert can serve this request: {detail}", headers={"Retry-After": "1"})


def canary_arm(profile: Profile, request_id: str) -> tuple[str, float]:
    """Which router decides this request, and the probability of that draw (1.0 without a canary)."""
    canary = profile.canary
    if canary is None or canary.share <= 0:
        return profile.router, 1.0
    if unit_hash(request_id, "canary") < canary.share:
        return canary.router, canary.share
    return profile.router, 1.0 - canary.share


def _cost_weight(header: str | None, default: float) -> float:
    if header is None:
        return default
    try:
        value = float(header)
    except ValueError:
        value = -1.0
    if not (0.0 <= value <= 1000.0):
        raise BadRequest("x-router-cost-weight must be a number between 0 and 1000", param="x-router-cost-weight")
    return value


def _bandit_chooser(loaded: LoadedRouter, x: np.ndarray, request_id: str, names: list[str]):
    """For routers that declare they choose for themselves (``chooses``: ``choose`` -> index,
    propensity) and know exactly the config's experts in its order; None otherwise (the shared
    policy ranks)."""
    router = loaded.router
    if not router.chooses or list(router.experts_) != names:
        return None
    return lambda eligible, cost, weight: router.choose(x[None, :], request_id, cost, weight, eligible)


def _explore(order: list[int], epsilon: float, request_id: str) -> tuple[list[int], float, bool]:
    """Epsilon-greedy over the eligible ranking, deterministic given the request id.

    Returns the new order (the explored expert first, the rest as ranked), the propensity of the
    expert that is now first, and whether exploration happened.
    """
    n = len(order)
    greedy_p = 1.0 - epsilon + epsilon / n
    other_p = epsilon / n
    if unit_hash(request_id, "explore") >= epsilon:
        return order, greedy_p, False
    pick = int(unit_hash(request_id, "arm") * n)
    chosen = order[pick]
    rest = [i for i in order if i != chosen]
    return [chosen] + rest, (greedy_p if pick == 0 else other_p), pick != 0
