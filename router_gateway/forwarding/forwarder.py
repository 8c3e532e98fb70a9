"""Forwarding to experts: pooled HTTP clients, fallback before the first byte, SSE pass-through.

A request tries the ranked candidates in order. Connection errors, 5xx, 429, an unexpected 1xx-3xx
(a redirect is not followed), a body over ``server.max_response_bytes``, a stream answered with
something other than an event stream, and timeouts before the first byte reaches the client move on
to the next candidate, within ``server.max_attempts`` and the request deadline. Once a byte has been
sent, a failure ends the stream with an SSE error event: a broken body, an event over
``sse.MAX_EVENT_BYTES``, a stream that ends without ``data: [DONE]`` (a close-delimited body cut
short looks like a clean end at the HTTP level), or one still running at the expert's
``timeout.total`` or the request deadline (the upstream is closed there).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

import orjson

from router_gateway.domain.config import Expert, GatewayConfig
from router_gateway.domain.errors import (
    BadRequest,
    GatewayError,
    UpstreamError,
    UpstreamTimeout,
    sse_error_event,
)
from router_gateway.forwarding.relay import EndHook, Relay, StreamOutcome
from router_gateway.forwarding.result import Attempt, ForwardResult
from router_gateway.forwarding.sse import (
    RESPONSES_PATH,
    ModelRenamer,
    is_done,
    is_usage_only,
    normalised_usage,
    sse_batches,
    usage_of,
)
from router_gateway.forwarding.sse_errors import counts_against_expert
from router_gateway.forwarding.upstream import (
    UpstreamBodyError,
    UpstreamBodyTimeout,
    UpstreamBodyTooLarge,
    UpstreamConnectError,
    UpstreamResponse,
    make_upstream,
)
from router_gateway.http.http1 import Connector
from router_gateway.state.expert_state import ExpertState

CHAT_PATH = "/chat/completions"
#: the list a 200 answer of each API holds (chat and completions: choices); without it, it is no answer
ANSWER_LISTS = {"/responses": "output", "/embeddings": "data"}

def retryable_status(status: int) -> bool:
    """The expert failed, not the request: 429, any 5xx, and anything but 200 below 400 (a chat
    completion is a 200; a 3xx is not followed, since a redirect could point anywhere)."""
    return status == 429 or status >= 500 or (status != 200 and status < 400)


class ClientError(GatewayError):
    """The expert rejected the request itself (4xx other than 429): passed to the client as is."""

    type = "invalid_request_error"

    def __init__(self, status: int, body: bytes):
        super().__init__(f"expert rejected the request with status {status}")
        self.status = status
        self.raw = body

    def body_bytes(self) -> bytes:
        try:
            data = orjson.loads(self.raw)
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                return self.raw
        except orjson.JSONDecodeError:
            pass
        return orjson.dumps({"error": {"message": self.raw[:500].decode("utf-8", "replace") or self.message,
                                       "type": self.type, "param": None, "code": f"upstream_{self.status}"}})


class Forwarder:
    """Holds one pooled upstream client per expert; built per config version."""

    def __init__(self, config: GatewayConfig, state: ExpertState, connect: Connector | None = None):
        self.config = config
        self.state = state
        # ``connect``: the HTTP client's connection factory (real TCP/TLS when None; in-memory in unit tests)
        self._clients = {name: make_upstream(e, connect) for name, e in config.experts.items()
                         if e.provider == "openai"}
        self._litellm = None
        if any(e.provider == "litellm" for e in config.experts.values()):
            # importing litellm takes seconds: pay it while the config loads, not on a request
            from router_gateway.forwarding.litellm_provider import LiteLLMProvider
            self._litellm = LiteLLMProvider()

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients.values()), return_exceptions=True)

    async def forward(self, candidates: list[str], body: dict[str, Any], stream: bool,
                      deadline: float, path: str = CHAT_PATH) -> ForwardResult:
        """Try candidates in order; return the first success or raise the right GatewayError.

        ``path`` is the expert's endpoint: chat completions, or the Responses, completions and
        embeddings APIs, which litellm experts do not serve here."""
        attempts: list[Attempt] = []
        last: GatewayError | None = None
        if path != CHAT_PATH:  # litellm experts are reached through chat completions only
            candidates = [c for c in candidates if self.config.experts[c].provider == "openai"]
            if not candidates:
                raise BadRequest(f"no expert for this request serves {path}", param="model",
                                 code="unsupported_endpoint")
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        for name in candidates[: self.config.server.max_attempts]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            expert = self.config.experts[name]
            payload = self._payload(body, expert, stream and path != RESPONSES_PATH)
            started = time.perf_counter()
            self.state.acquire(name)
            try:
                if expert.provider == "litellm":
                    result = await self._litellm_call(name, expert, payload, stream, remaining)
                elif stream:
                    result = await self._open_stream(name, expert, payload, remaining, wants_usage, path)
                else:
                    result = await self._call(name, expert, payload, remaining, path)
            except _Retryable as exc:
                self.state.release(name)
                self.state.record_failure(name, exc.outcome, stream=stream)
                attempts.append(Attempt(name, exc.outcome, (time.perf_counter() - started) * 1e3))
                last = exc.error
                continue
            except ClientError as exc:
                self.state.release(name)
                self.state.record_success(name, stream=stream)  # the expert is healthy; the request was bad
                attempts.append(Attempt(name, f"http_{exc.status}", (time.perf_counter() - started) * 1e3))
                exc.attempts = attempts  # the log says which expert refused it
                raise
            except BaseException:
                self.state.release(name)
                raise
            attempts.append(Attempt(name, "ok", (time.perf_counter() - started) * 1e3))
            result.attempts = attempts
            if stream and expert.provider == "litellm":
                result.stream.on_end(self._stream_ended(name, complete_if_unbroken=True))
            if not stream:
                self.state.release(name)
                self.state.record_success(name)
            return result
        if last is None:
            last = UpstreamTimeout("request deadline passed before any expert answered")
        last.message += " (tried: " + ", ".join(f"{a.expert}={a.outcome}" for a in attempts) + ")"
        last.attempts = attempts  # type: ignore[attr-defined]
        raise last

    @staticmethod
    def _payload(body: dict[str, Any], expert: Expert, stream: bool) -> dict[str, Any]:
        payload = dict(body)
        payload["model"] = expert.model
        if stream:
            options = dict(payload.get("stream_options") or {})
            options["include_usage"] = True  # so tokens and cost are known for streams too
            payload["stream_options"] = options
        return payload

    async def _call(self, name: str, expert: Expert, payload: dict, remaining: float,
                    path: str = CHAT_PATH) -> ForwardResult:
        # the whole answer is the first byte the client gets: bounded by first_byte and total alike
        timeout = min(expert.timeout.first_byte, expert.timeout.total, remaining)
        response = None
        try:
            async with asyncio.timeout(timeout):
                response = await self._clients[name].post(path, orjson.dumps(payload),
                                                          time.monotonic() + timeout)
                if retryable_status(response.status):
                    raise _Retryable(f"http_{response.status}",
                                     UpstreamError(f"expert {name} answered {response.status}"))
                content = await response.read(self.config.server.max_response_bytes)
        except (TimeoutError, UpstreamBodyTimeout):
            raise _Retryable("timeout", UpstreamTimeout(f"expert {name} did not answer in time")) from None
        except UpstreamConnectError as exc:
            raise _Retryable("connect_error", UpstreamError(f"expert {name} unreachable: {exc}")) from None
        except UpstreamBodyTooLarge as exc:
            raise _Retryable("too_large", UpstreamError(
                f"expert {name} sent an answer over server.max_response_bytes: {exc}")) from None
        except UpstreamBodyError as exc:
            raise _Retryable("protocol_error", UpstreamError(f"expert {name} broke off its answer: {exc}")) from None
        finally:
            if response is not None:
                await response.close()
        if response.status >= 400:
            raise ClientError(response.status, content)
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise _Retryable("protocol_error", UpstreamError(f"expert {name} sent invalid JSON")) from None
        answer = ANSWER_LISTS.get(path, "choices")
        if not isinstance(data, dict) or not isinstance(data.get(answer), list):
            # e.g. a proxy's error object under a 200: not an answer, so not relayed as one
            raise _Retryable("protocol_error", UpstreamError(f"expert {name} answered 200 without {answer}"))
        usage = normalised_usage(data.get("usage"))
        return ForwardResult(name, response.status, [], body=ModelRenamer(expert.model, name)(content),
                             usage=usage)

    async def _open_stream(self, name: str, expert: Expert, payload: dict, remaining: float,
                           wants_usage: bool, path: str = CHAT_PATH) -> ForwardResult:
        started = time.perf_counter()
        response = None
        # the whole stream ends by the expert's total timeout and the request deadline: the upstream
        # body fails with UpstreamBodyTimeout there, which _upstream_events turns into the final error event
        total = min(expert.timeout.total, remaining)
        try:
            async with asyncio.timeout(min(expert.timeout.first_byte, total)):
                response = await self._clients[name].post(path, orjson.dumps(payload),
                                                          time.monotonic() + total)
                if retryable_status(response.status):
                    raise _Retryable(f"http_{response.status}",
                                     UpstreamError(f"expert {name} answered {response.status}"))
                if response.status >= 400:
                    limit = self.config.server.max_response_bytes
                    raise ClientError(response.status, await response.read(limit))
                if not response.is_event_stream:
                    raise _Retryable("protocol_error", UpstreamError(
                        f"expert {name} answered a stream request with content-type "
                        f"{response.content_type[:100]!r}, not text/event-stream"))
                batches = sse_batches(response.chunks())
                first = await batches.__anext__()
                if first and counts_against_expert(first[0]):
                    # the expert failed before it answered anything (and before the client got a byte):
                    # the next expert may answer. An error after content is relayed (and counted)
                    raise _Retryable("protocol_error", UpstreamError(
                        f"expert {name} opened its stream with an error event"))
        except (TimeoutError, UpstreamBodyTimeout):
            await _close(response)
            raise _Retryable("timeout", UpstreamTimeout(f"expert {name} sent no first byte in time")) from None
        except (UpstreamConnectError, UpstreamBodyError, StopAsyncIteration) as exc:
            await _close(response)
            outcome = "connect_error" if isinstance(exc, UpstreamConnectError) else "protocol_error"
            raise _Retryable(outcome, UpstreamError(
                f"expert {name} failed before the first byte: {type(exc).__name__} {exc}")) from None
        except BaseException:
            await _close(response)
            raise
        relay = Relay(self._upstream_events(name, expert, batches, first, wants_usage), response.close,
                      StreamOutcome(status=response.status))
        relay.on_end(self._stream_ended(name))
        return ForwardResult(name, response.status, [], stream=relay, ttft_ms=(time.perf_counter() - started) * 1e3)

    def _upstream_events(self, name: str, expert: Expert, batches: AsyncIterator[list[bytes]],
                         first: list[bytes], client_wants_usage: bool):
        """The events source of a relayed expert stream (see forwarding.relay): yield events to the
        client as they arrive (those of one upstream read in one piece), record usage and the expert's
        errors in the outcome, end with an error event on an upstream failure."""
        rename = ModelRenamer(expert.model, name)

        async def events(outcome: StreamOutcome) -> AsyncIterator[bytes]:
            try:
                batch = first
                while True:
                    out = []
                    for event in batch:
                        if counts_against_expert(event):  # the stream may still end with [DONE]
                            outcome.expert_error = "the expert sent an error event mid-stream"
                        usage = usage_of(event)
                        if usage is not None:
                            outcome.usage = usage
                        if usage is None or client_wants_usage or not is_usage_only(event):
                            out.append(rename(event))
                        if is_done(event):
                            outcome.done = True
                            break
                    if out:
                        yield out[0] if len(out) == 1 else b"".join(out)
                    if outcome.done:
                        return
                    try:
                        batch = await batches.__anext__()
                    except StopAsyncIteration:
                        # without [DONE] the answer may be cut short (a close-delimited body that broke
                        # off ends like a complete one): an upstream failure, not a success
                        raise UpstreamBodyError("the stream ended without data: [DONE]") from None
            except UpstreamBodyTimeout as exc:
                outcome.expert_error = f"upstream timeout mid-stream: {exc}"
                outcome.status = UpstreamTimeout.status
                yield sse_error_event(UpstreamTimeout(
                    f"expert {name} was still streaming at its total timeout or the request deadline"))
            except (UpstreamConnectError, UpstreamBodyError) as exc:
                outcome.expert_error = f"mid-stream failure: {exc}"
                outcome.status = 502
                yield sse_error_event(UpstreamError(f"expert {name} failed mid-stream ({exc})"))
        return events

    def _stream_ended(self, name: str, complete_if_unbroken: bool = False) -> EndHook:
        """The forwarder's part of a stream's end: the expert's in-flight slot back, and its health. A
        relayed HTTP stream is a success only once its [DONE] arrived; a litellm stream is one unless
        it broke (``complete_if_unbroken``)."""
        def ended(outcome: StreamOutcome) -> None:
            self.state.release(name)
            if outcome.expert_error is not None:
                self.state.record_failure(name, "mid_stream", stream=True)
            elif outcome.done or complete_if_unbroken:
                self.state.record_success(name, stream=True)
        return ended

    async def _litellm_call(self, name: str, expert: Expert, payload: dict, stream: bool,
                            remaining: float) -> ForwardResult:
        if self._litellm is None:
            from router_gateway.forwarding.litellm_provider import LiteLLMProvider
            self._litellm = LiteLLMProvider()
        return await self._litellm.call(name, expert, payload, stream, remaining, _Retryable)


class _Retryable(Exception):
    """Internal: this attempt failed in a way that allows trying the next expert."""

    def __init__(self, outcome: str, error: GatewayError):
        super().__init__(outcome)
        self.outcome = outcome
        self.error = error


async def _close(response: UpstreamResponse | None) -> None:
    if response is not None:
        await response.close()
