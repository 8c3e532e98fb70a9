"""Experts that are not OpenAI-compatible, called through litellm (optional extra, audited pin).

litellm had compromised releases on PyPI; the extra pins one release known to be clean. It is
imported only when a ``provider: litellm`` expert is first called, and told to use its bundled
cost map (it probes the network at import otherwise).
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any, AsyncIterator

import orjson

from router_gateway.domain.config import Expert
from router_gateway.domain.errors import UpstreamError, UpstreamTimeout, sse_error_event
from router_gateway.forwarding.relay import Relay, StreamOutcome
from router_gateway.forwarding.result import ForwardResult

# what a client may send that litellm must not receive twice or at all
_OWN_FIELDS = {"model", "messages", "stream"}


class LiteLLMProvider:
    """Calls ``litellm.acompletion`` and converts its objects to OpenAI JSON bytes."""

    def __init__(self):
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        try:
            import litellm
        except ImportError:
            raise UpstreamError("an expert uses provider: litellm but litellm is not installed "
                                "(pip install 'router-gateway[litellm]')") from None
        import logging
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):  # per-call INFO lines on the hot path
            logging.getLogger(name).setLevel(logging.WARNING)
        litellm.suppress_debug_info = True
        litellm.telemetry = False
        litellm.drop_params = False
        self._litellm = litellm

    async def call(self, name: str, expert: Expert, payload: dict[str, Any], stream: bool,
                   remaining: float, retryable: type[Exception]):
        extra = {k: v for k, v in payload.items() if k not in _OWN_FIELDS}
        started = time.perf_counter()
        try:
            response = await asyncio.wait_for(self._litellm.acompletion(
                model=expert.litellm_model, messages=payload["messages"], stream=stream,
                api_base=expert.base_url, api_key=expert.api_key or "unused",
                timeout=expert.timeout.total, **extra), timeout=min(expert.timeout.first_byte, remaining))
        except asyncio.TimeoutError:
            raise retryable("timeout", UpstreamTimeout(f"expert {name} did not answer in time")) from None
        except Exception as exc:  # litellm wraps every provider error in its own classes
            status = getattr(exc, "status_code", 502)
            outcome = f"http_{status}" if isinstance(status, int) else "provider_error"
            raise retryable(outcome, UpstreamError(f"expert {name} failed: {type(exc).__name__}")) from None
        if not stream:
            data = response.model_dump()
            data["model"] = name
            return ForwardResult(name, 200, [], body=orjson.dumps(data), usage=data.get("usage"))
        deadline = time.monotonic() + min(expert.timeout.total, remaining)
        wants_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        relay = Relay(lambda outcome: self._events(name, response, outcome, wants_usage, deadline),
                      lambda: _close(response))
        return ForwardResult(name, 200, [], stream=relay, ttft_ms=(time.perf_counter() - started) * 1e3)

    @staticmethod
    async def _events(name: str, response: AsyncIterator, outcome: StreamOutcome, wants_usage: bool,
                      deadline: float) -> AsyncIterator[bytes]:
        """Relay litellm's chunks as SSE (the events source of a forwarding.relay.Relay); a stream still
        running at ``deadline`` (the expert's total timeout or the request deadline) ends with a
        timeout error event."""
        chunks = aiter(response)
        try:
            while True:
                try:
                    async with asyncio.timeout(deadline - time.monotonic()):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                data = chunk.model_dump(exclude_none=True)
                data["model"] = name
                usage = data.get("usage")
                if usage:
                    outcome.usage = usage
                    if not wants_usage and not data.get("choices"):
                        continue
                yield b"data: " + orjson.dumps(data) + b"\n\n"
            outcome.done = True
            yield b"data: [DONE]\n\n"
        except TimeoutError:
            outcome.expert_error = "upstream timeout mid-stream"
            outcome.status = UpstreamTimeout.status
            yield sse_error_event(UpstreamTimeout(
                f"expert {name} was still streaming at its total timeout or the request deadline"))
        except Exception as exc:
            outcome.expert_error = f"mid-stream failure: {type(exc).__name__}"
            outcome.status = 502
            yield sse_error_event(UpstreamError(f"expert {name} failed mid-stream ({type(exc).__name__})"))


async def _close(response: AsyncIterator) -> None:
    """Close litellm's stream (and so the upstream connection: generation stops)."""
    aclose = getattr(response, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a broken stream must not mask how it ended
            pass
