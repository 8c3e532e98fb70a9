"""The chat-completion use case: decide, forward, price, log. The HTTP handler only parses and renders."""
from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Protocol

from router_gateway.capacity.pacing import budget_pacing
from router_gateway.capacity.profile_budget import admit_profile, settle_profile
from router_gateway.cascade import service as cascade
from router_gateway.domain.errors import (
    ClientClosedRequest,
    GatewayError,
    GatewayShuttingDown,
)
from router_gateway.domain.protocol import ChatRequest
from router_gateway.domain.record import Attempt, RecordObserver, RequestRecord
from router_gateway.forwarding.relay import StreamOutcome
from router_gateway.forwarding.result import ForwardResult
from router_gateway.forwarding.usage import clean_usage
from router_gateway.routing.key_access import check_model_allowed, reachable_experts
from router_gateway.routing.service import Decision
from router_gateway.runtime import Runtime
from router_gateway.state.holds import Hold, expected_hold
from router_gateway.state.request_log import prompt_digest
from router_gateway.state.sessions import SessionRef
from router_gateway.task_stop import cancellation_pending


def new_request_id() -> str:
    return "req-" + uuid.uuid4().hex


@dataclass
class ChatOutcome:
    """What the handler renders: headers plus a body or a stream."""

    headers: dict[str, str]
    body: bytes | None = None
    stream: AsyncIterator[bytes] | None = None


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI endpoint served through routing: the expert path it forwards to, whether fallbacks
    may answer (not for embeddings: another model's vectors mean something else), and how routing's
    param names read in this endpoint's body (for 400s)."""

    name: str
    path: str
    fallbacks: bool = True
    params: tuple[tuple[str, str], ...] = ()


CHAT = Endpoint("chat.completions", "/chat/completions")


@dataclass
class CallContext:
    """Per-request facts known before routing (from the HTTP layer)."""

    request_id: str
    body: dict[str, Any]
    body_size: int
    cost_weight_header: str | None = None
    key_id: str | None = None
    allowed_experts: set[str] | None = None
    api_key: Any = None  # the caller's auth.ApiKey (None when the gateway runs without keys)
    #: set by the HTTP layer when the client went away; a cancellation without it is the server's own
    #: (uvicorn cancels what is still running when the shutdown's drain timeout ends)
    client_gone: bool = False
    hold: Hold | None = None  # what the request holds against the key's budgets and TPM until it ends
    profile_hold: Hold | None = None  # ... and against its profile's budget (profiles.<name>.budget)
    started: float = field(default_factory=time.perf_counter)
    ts: float = field(default_factory=time.time)
    endpoint: Endpoint = CHAT
    session: SessionRef | None = None
    on_result: Callable[[ForwardResult], None] | None = None  # e.g. remember a Responses API id


class GatewayServices(Protocol):
    """What a request needs from the running gateway (container.Gateway provides it; tests may fake it):
    the current config version, admission and settlement of budgets, the request log and who reads
    the records. The pipeline never imports the container: the container passes itself in."""

    runtime: Runtime | None
    limiter: Any  # state.limits LocalLimiter | SharedLimiter
    request_log: Any  # state.request_log.RequestLog
    learning: Any  # learning.service.LearningService | None
    observers: list[RecordObserver]
    pacer: Any  # capacity.pacing.BudgetPacer (read by budget_pacing with spend)
    spend: Any

    def acquire(self) -> Runtime: ...

    def release(self, runtime: Runtime) -> None: ...

    def settle_usage(self, key: Any, hold: Hold | None, tokens: int, cost: float) -> None: ...


class ChatService:
    """Runs one chat request through routing and forwarding and writes its log record."""

    def __init__(self, gateway: GatewayServices):
        self.gateway = gateway

    async def handle(self, chat: ChatRequest, ctx: CallContext) -> ChatOutcome:
        runtime = self.gateway.acquire()
        decision: Decision | None = None
        try:
            if ctx.api_key is not None:
                await self._admit(ctx, chat, runtime)
            ctx.profile_hold = await admit_profile(self.gateway, runtime.config, chat, ctx.body_size,
                                                   ctx.allowed_experts)
            decision = await runtime.routing.decide(chat, ctx.body_size, ctx.request_id,
                                                    ctx.cost_weight_header, ctx.allowed_experts,
                                                    pace=budget_pacing(self.gateway, ctx.api_key, chat.model),
                                                    session=ctx.session)
            if cancellation_pending():  # a Redis reply above can swallow the client's cancellation
                raise asyncio.CancelledError  # (task_stop): do not send the expert a request nobody reads
            deadline = time.monotonic() + runtime.config.server.request_deadline_s
            experts = [c.expert for c in decision.candidates]
            if ctx.endpoint is CHAT and cascade.settings_for(runtime, decision) is not None:  # verified escalation
                result = await cascade.cascade_forward(runtime, decision, ctx.body, chat.stream, deadline,
                                                       price_usage)
            else:
                result = await runtime.forwarder.forward(experts if ctx.endpoint.fallbacks else experts[:1],
                                                         ctx.body, chat.stream, deadline, ctx.endpoint.path)
            await self._hand_over(runtime, decision, ctx, result)
        except GatewayError as exc:
            exc.headers = {**exc.headers, "x-request-id": ctx.request_id}  # errors are logged too: link them
            exc.param = dict(ctx.endpoint.params).get(exc.param, exc.param)
            self._log(runtime, ctx, chat, decision, None, error=exc)
            self.gateway.release(runtime)
            raise
        except asyncio.CancelledError:
            # the client disconnected (chat_endpoint cancels the request) or the gateway is stopping:
            # the upstream call was cancelled with it; the request is still logged
            self._log(runtime, ctx, chat, decision, None, error=cancelled_error(ctx, "before the answer"))
            self.gateway.release(runtime)
            raise
        except Exception as exc:
            # a bug: the client gets a 500 (chat_endpoint), and the record says what happened
            self._log(runtime, ctx, chat, decision, None, error=internal_error(exc))
            self.gateway.release(runtime)
            raise
        except BaseException:
            self._settle(ctx, {}, None)  # no record to write it with: still give the hold back
            self.gateway.release(runtime)
            raise
        if result.stream is None:
            result.usage = self._clean_usage(runtime, chat, ctx, result, result.usage)
        headers = self._headers(ctx, decision, result, runtime)
        if result.stream is None:
            self._log(runtime, ctx, chat, decision, result, result.status)
            self.gateway.release(runtime)
            return ChatOutcome(headers, body=result.body)
        # from here the stream's relay owns the end: it calls _stream_ended once, however the stream ends
        result.stream.on_end(lambda outcome: self._stream_ended(runtime, ctx, chat, decision, result, outcome))
        return ChatOutcome(headers, stream=result.stream)

    @staticmethod
    async def _hand_over(runtime: Runtime, decision: Decision, ctx: CallContext, result: ForwardResult) -> None:
        """Session affinity and the endpoint's hook see the result. If either fails while the result holds
        a stream, nobody will read that stream: close it here (the expert's slot is given back and the
        upstream connection closed), then let the failure take its usual path (logged, runtime released)."""
        try:
            if runtime.routing.affinity is not None:
                runtime.routing.affinity.settle(decision, result.expert)
            if ctx.on_result is not None:
                ctx.on_result(result)
        except BaseException:
            if result.stream is not None:
                await result.stream.aclose()
            raise

    def _stream_ended(self, runtime: Runtime, ctx: CallContext, chat: ChatRequest, decision: Decision,
                      result: ForwardResult, outcome: StreamOutcome) -> None:
        """The pipeline's part of a stream's end (forwarding.relay): the record, then the runtime back."""
        try:
            status, error = outcome.status, outcome.expert_error
            if outcome.cut:  # the client went away (not the expert's failure, but not a complete answer
                # either), or the gateway cut the stream at the end of its drain timeout
                cut = cancelled_error(ctx, "mid-stream")
                status, error = cut.status, error or cut.message
            elif outcome.bug is not None:  # a bug mid-stream: chat_endpoint ends the stream with an error event
                bug = internal_error(outcome.bug)
                status, error = bug.status, error or bug.message
            usage = self._clean_usage(runtime, chat, ctx, result,
                                      outcome.usage if outcome.usage is not None else result.usage)
            self._log(runtime, ctx, chat, decision, result, status, stream_error=error, usage=usage or {})
        finally:
            self.gateway.release(runtime)

    def log_unexpected_before_routing(self, exc: Exception) -> None:
        """A bug while reading or checking the request (before a CallContext exists): still one record."""
        runtime = self.gateway.runtime
        ctx = CallContext(new_request_id(), {}, 0)
        chat = ChatRequest.model_construct(model=None, messages=[], stream=False)
        self._log(runtime, ctx, chat, None, None, error=internal_error(exc))

    async def _admit(self, ctx: CallContext, chat: ChatRequest, runtime: Runtime) -> None:
        """The key's allow-lists, then its limits; budgets and TPM hold the request's expected use."""
        key = ctx.api_key
        check_model_allowed(key, chat, runtime.config)
        ctx.allowed_experts = reachable_experts(key, runtime.config)
        if not key.has_limits:
            return
        wants_hold = any(v is not None for v in (key.tpm, key.budget_usd_day, key.budget_usd_month))
        hold = expected_hold(key.id, chat, ctx.body_size, runtime.config, ctx.allowed_experts) if wants_hold else None
        ctx.hold = await self.gateway.limiter.admit(key, hold)

    def _settle(self, ctx: CallContext, usage: dict, cost: float | None) -> None:
        settle_profile(self.gateway, ctx.profile_hold, cost)
        if ctx.api_key is None or not ctx.api_key.has_limits:
            return
        tokens = sum(v for v in (usage.get("prompt_tokens"), usage.get("completion_tokens")) if isinstance(v, int))
        self.gateway.settle_usage(ctx.api_key, ctx.hold, tokens, cost or 0.0)

    @staticmethod
    def _clean_usage(runtime: Runtime, chat: ChatRequest, ctx: CallContext, result: ForwardResult,
                     usage: dict | None) -> dict | None:
        if cascade.is_cascade(result):  # each tier's usage was clamped before the tiers were summed
            return usage
        expert = runtime.config.experts.get(result.expert)
        return clean_usage(usage, result.expert, expert.context_window if expert else 0, chat.n,
                           ctx.request_id)

    def _headers(self, ctx: CallContext, decision: Decision, result: ForwardResult,
                 runtime: Runtime) -> dict[str, str]:
        headers = {"x-request-id": ctx.request_id, "x-router-expert": result.expert,
                   "x-router-profile": decision.profile or "", "x-router-attempts": str(len(result.attempts))}
        if decision.router:
            headers["x-router-router"] = decision.router
        if "pacing" in decision.extra:
            headers["x-router-cost-weight"] = f"{decision.cost_weight:.6g}"  # the paced, effective weight
        if decision.affinity is not None and decision.affinity.ref.key:
            headers["x-router-session"] = decision.affinity.ref.key
            headers["x-router-affinity"] = decision.affinity.state
        cost = price_usage(runtime, result.expert, result.usage)
        if cost is not None:
            headers["x-router-cost-usd"] = f"{cost:.8f}"
        headers.update(cascade.headers(result))  # every tier, and the cost of all of them
        return headers

    def _log(self, runtime: Runtime, ctx: CallContext, chat: ChatRequest, decision: Decision | None,
             result: ForwardResult | None, status: int | None = None, error: GatewayError | None = None,
             stream_error: str | None = None, usage: dict | None = None) -> None:
        """Write the request's record (``usage``: the cleaned usage, default the result's) and hand it
        to the learning service, the key's settlement and the observers."""
        if status is None:
            status = error.status if error is not None else 500
        if self.gateway.request_log is None:
            self._settle(ctx, {}, None)
            return
        attempts = (result.attempts if result else getattr(error, "attempts", [])) or []
        usage = (usage if usage is not None else result.usage if result else None) or {}
        record = request_record(runtime, ctx, chat, decision, result, status,
                                error.message if error else stream_error, attempts, usage)
        self.gateway.request_log.record(record)
        if self.gateway.learning is not None and result is not None:  # enqueue only: shadow work runs later
            self.gateway.learning.offer(record, ctx.body, result.body if result.stream is None else None)
        self._settle(ctx, usage, record.cost_usd)
        for observer in self.gateway.observers:
            observer.on_record(record)


def request_record(runtime: Runtime, ctx: CallContext, chat: ChatRequest, decision: Decision | None,
                   result: ForwardResult | None, status: int, error: str | None,
                   attempts: list[Attempt], usage: dict) -> RequestRecord:
    """The one place a request's record is written (domain.record says what each field means)."""
    expert = result.expert if result else None
    record = RequestRecord(
        request_id=ctx.request_id, ts=ctx.ts, model=chat.model, chosen_expert=expert, status=status, error=error,
        stream=chat.stream, attempts=list(attempts), ttft_ms=result.ttft_ms if result else None,
        latency_ms=round((time.perf_counter() - ctx.started) * 1e3, 3),
        prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"),
        cost_usd=price_usage(runtime, expert, usage) if expert else None,
        key_id=ctx.key_id, config_version=runtime.version)
    if decision is not None:
        _record_decision(record, decision, result)
    record.cascade = cascade.record_fields(result, runtime.config.logging.store_prompts)
    if record.cascade is not None:
        record.cost_usd = cascade.total_cost(result)  # every tier's cost, not only the answer's
    if ctx.endpoint is not CHAT:
        record.endpoint = ctx.endpoint.name
    return record


def _record_decision(record: RequestRecord, decision: Decision, result: ForwardResult | None) -> None:
    """The routing decision's part of the record."""
    text = decision.prompt_text
    record.profile, record.router = decision.profile, decision.router
    record.candidates = [c.as_dict() for c in decision.candidates]
    record.ineligible = decision.ineligible
    # a fallback's answer was not the policy's choice: no propensity, so OPE skips the row
    record.propensity = decision.propensity if result and result.expert == decision.chosen else None
    record.explored, record.cost_weight = decision.explored, decision.cost_weight
    record.pacing = decision.extra.get("pacing")
    record.prompt_digest, record.prompt = (prompt_digest(text), text) if text else (None, None)
    record.embed_ms, record.route_ms = decision.embed_ms, decision.route_ms
    affinity = decision.affinity
    if affinity is not None:  # requests in a session: which one, and what affinity did
        record.session, record.session_source = affinity.ref.key, affinity.ref.source
        record.affinity, record.affinity_previous_expert = affinity.state, affinity.pinned
        record.affinity_moved_reason = affinity.moved_reason


def cancelled_error(ctx: CallContext, when: str) -> GatewayError:
    """Why a request was cancelled: its client left (499), or the gateway cut it while shutting down."""
    if ctx.client_gone:
        return ClientClosedRequest("client disconnected mid-stream" if when == "mid-stream" else
                                   f"cancelled {when}: the client disconnected")
    return GatewayShuttingDown(f"cancelled {when}: gateway shutting down (drain timeout passed)")


def internal_error(exc: BaseException) -> GatewayError:
    """An unexpected exception as the 500 it is answered with, naming it for the log."""
    return GatewayError(f"internal error in the gateway: {type(exc).__name__}: {str(exc)[:300]}")


def price_usage(runtime: Runtime, expert: str | None, usage: dict | None) -> float | None:
    """USD for the tokens an expert reported, from experts.yaml prices."""
    if not expert or not usage or expert not in runtime.config.experts:
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return runtime.config.experts[expert].price.cost(prompt, completion)
