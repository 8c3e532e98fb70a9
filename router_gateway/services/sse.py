"""Minimal SSE framing on raw bytes: split events, rewrite the model name, pick out usage.

Why bytes: the hot path must not decode and re-encode every chunk. Only the (rare) usage event is
parsed as JSON.
"""
from __future__ import annotations

from typing import AsyncIterator

import orjson


async def sse_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """Re-frame a byte stream into whole SSE events (each ending in a blank line), grouped by read.

    The events that one upstream read completes come out together, so the relay can hand them to the
    client in one write: no event waits for a later one, and a burst costs one send, not one per event.
    """
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        if b"\n\n" not in buffer and b"\r\n\r\n" not in buffer:
            continue
        if b"\r\n" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        cut = buffer.rfind(b"\n\n") + 2
        complete, buffer = buffer[:cut], buffer[cut:]
        events = [event + b"\n\n" for event in complete.split(b"\n\n") if event.strip()]
        if events:
            yield events
    if buffer.strip():
        yield [buffer if buffer.endswith(b"\n\n") else buffer + b"\n\n"]


class ModelRenamer:
    """Replaces the served model name with the expert's name in JSON bytes."""

    def __init__(self, served: str, expert: str):
        self.active = served != expert
        s, e = orjson.dumps(served), orjson.dumps(expert)
        self.pairs = [(b'"model":' + s, b'"model":' + e), (b'"model": ' + s, b'"model": ' + e)]

    def __call__(self, data: bytes) -> bytes:
        if self.active:
            for old, new in self.pairs:
                data = data.replace(old, new, 1)  # the top-level "model" comes first
        return data


RESPONSES_PATH = "/responses"


def usage_of(event: bytes) -> dict | None:
    """The ``usage`` object of an SSE chunk that carries one, else None; chat chunks carry it at the
    top, the Responses API's ``response.completed`` event inside ``response``."""
    if b'"prompt_tokens"' not in event and b'"input_tokens"' not in event:
        return None
    try:
        data = orjson.loads(event.split(b"data:", 1)[1])
    except (IndexError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("response"), dict):
        data = data["response"]
    return normalised_usage(data.get("usage"))


def normalised_usage(usage) -> dict | None:
    """Usage in the chat API's names whichever API reported it: the Responses API says input/output
    tokens; embeddings report no completion tokens (priced as zero)."""
    if not isinstance(usage, dict):
        return None
    if "input_tokens" in usage and "prompt_tokens" not in usage:
        usage = {**usage, "prompt_tokens": usage.get("input_tokens"),
                 "completion_tokens": usage.get("output_tokens", 0)}
    elif "prompt_tokens" in usage and "completion_tokens" not in usage:
        usage = {**usage, "completion_tokens": 0}
    return usage


def is_usage_only(event: bytes) -> bool:
    """A chunk with no choices, just usage (what include_usage adds at the end)."""
    return b'"choices":[]' in event or b'"choices": []' in event
