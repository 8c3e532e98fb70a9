"""The chat-completion use case: decide, forward, price, log. The HTTP handler only parses and renders."""
from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Protocol

from router_gateway.capacity.pacing import budget_pacing
from router_gateway.cascade import service as cascade
from router_gateway.domain.errors import (
    ClientClosedRequest,
    GatewayError,
    GatewayShuttingDown,
)
from router_gateway.domain.protocol import ChatRequest
from router_gateway.forwarding.result import ForwardResult
from router_gateway.forwarding.usage import clean_usage
from router_gateway.routing.key_access import check_model_allowed, reachable_experts
from router_gateway.routing.service import Decision
from router_gateway.runtime import Runtime
from router_gateway.state.holds import Hold, expected_hold
from router_gateway.state.request_log import prompt_digest
from router_gateway.state.sessions import SessionRef


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
    observers: list
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
            decision = await runtime.routing.decide(chat, ctx.body_size, ctx.request_id,
                                                    ctx.cost_weight_header, ctx.allowed_experts,
                                                    pace=budget_pacing(self.gateway, ctx.api_key),
                                                    session=ctx.session)
            deadline = time.monotonic() + runtime.config.server.request_deadline_s
            experts = [c.expert for c in decision.candidates]
            if ctx.endpoint is CHAT and cascade.settings_for(runtime, decision) is not None:  # verified escalation
                result = await cascade.cascade_forward(runtime, decision, ctx.body, chat.stream, deadline,
                                                       price_usage)
            else:
                result = await runtime.forwarder.forward(experts if ctx.endpoint.fallbacks else experts[:1],
                                                         ctx.body, chat.stream, deadline, ctx.endpoint.path)
            if runtime.routing.affinity is not None:
                runtime.routing.affinity.settle(decision, result.expert)
            if ctx.on_result is not None:
                ctx.on_result(result)
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
            result.usage = self._clean_usage(runtime, chat, ctx, result)
        headers = self._headers(ctx, decision, result, runtime)
        if result.stream is None:
            self._log(runtime, ctx, chat, decision, result, result.status)
            self.gateway.release(runtime)
            return ChatOutcome(headers, body=result.body)
        return ChatOutcome(headers, stream=self._stream(runtime, ctx, chat, decision, result))

    async def _stream(self, runtime: Runtime, ctx: CallContext, chat: ChatRequest, decision: Decision,
                      result: ForwardResult) -> AsyncIterator[bytes]:
        stream_error = None
        try:
            async for event in result.stream:
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            # the client went away mid-stream (not the expert's failure, but not a complete answer
            # either), or the gateway cut the stream at the end of its drain timeout
            error = cancelled_error(ctx, "mid-stream")
            result.status, stream_error = error.status, error.message
            raise
        except Exception as exc:  # a bug mid-stream: chat_endpoint ends the stream with an error event
            error = internal_error(exc)
            result.status, stream_error = error.status, error.message
            raise
        finally:
            try:
                # closing the relay closes the upstream response, so the expert stops generating
                aclose = getattr(result.stream, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:  # the record is written and the runtime released even if closing failed
                result.usage = self._clean_usage(runtime, chat, ctx, result)
                self._log(runtime, ctx, chat, decision, result, result.status,
                          stream_error=result.stream_state.get("error") or stream_error)
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
        if ctx.api_key is None or not ctx.api_key.has_limits:
            return
        tokens = sum(v for v in (usage.get("prompt_tokens"), usage.get("completion_tokens")) if isinstance(v, int))
        self.gateway.settle_usage(ctx.api_key, ctx.hold, tokens, cost or 0.0)

    @staticmethod
    def _clean_usage(runtime: Runtime, chat: ChatRequest, ctx: CallContext, result: ForwardResult) -> dict | None:
        if cascade.is_cascade(result):  # each tier's usage was clamped before the tiers were summed
            return result.usage
        expert = runtime.config.experts.get(result.expert)
        return clean_usage(result.usage, result.expert, expert.context_window if expert else 0, chat.n,
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
             stream_error: str | None = None) -> None:
        if status is None:
            status = error.status if error is not None else 500
        if self.gateway.request_log is None:
            self._settle(ctx, {}, None)
            return
        usage = (result.usage if result else None) or {}
        expert = result.expert if result else None
        attempts = (result.attempts if result else getattr(error, "attempts", [])) or []
        text = decision.prompt_text if decision else ""
        # a fallback's answer was not the policy's choice: no propensity, so OPE skips the row
        propensity = decision.propensity if decision and result and result.expert == decision.chosen else None
        record = {
            "request_id": ctx.request_id, "ts": ctx.ts, "model": chat.model,
            "profile": decision.profile if decision else None, "router": decision.router if decision else None,
            "candidates": [c.as_dict() for c in decision.candidates] if decision else [],
            "ineligible": decision.ineligible if decision else {},
            "chosen_expert": expert, "propensity": propensity, "explored": decision.explored if decision else False,
            "cost_weight": decision.cost_weight if decision else None,
            "pacing": decision.extra.get("pacing") if decision else None,
            "prompt_digest": prompt_digest(text) if text else None, "prompt": text or None,
            "status": status, "error": (error.message if error else stream_error),
            "stream": chat.stream, "attempts": [a.as_dict() for a in attempts],
            "ttft_ms": result.ttft_ms if result else None,
            "latency_ms": round((time.perf_counter() - ctx.started) * 1e3, 3),
            "embed_ms": decision.embed_ms if decision else None, "route_ms": decision.route_ms if decision else None,
            "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
            "cost_usd": price_usage(runtime, expert, usage) if expert else None,
            "key_id": ctx.key_id, "config_version": runtime.version,
        }
        # tiers, confidences, the labelled pair and all tiers' cost
        record.update(cascade.log_fields(result, runtime.config.logging.store_prompts))
        if ctx.endpoint is not CHAT:
            record["endpoint"] = ctx.endpoint.name
        if decision is not None and decision.affinity is not None:
            record.update(decision.affinity.as_dict())
        self.gateway.request_log.record(record)
        if self.gateway.learning is not None and result is not None:  # enqueue only: shadow work runs later
            self.gateway.learning.offer(record, ctx.body, result.body if result.stream is None else None)
        self._settle(ctx, usage, record["cost_usd"])
        for observer in self.gateway.observers:
            observer.on_record(record)


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
