"""Minimal SSE framing on raw bytes: split events, rewrite the model name, pick out usage.

Why bytes: the hot path must not decode and re-encode every chunk. Only the (rare) usage event is
parsed as JSON.
"""
from __future__ import annotations

from typing import AsyncIterator

import orjson

from router_gateway.http.errors import UpstreamBodyError

#: the largest SSE event accepted from an expert. A chat chunk is well under 1 KiB (a whole tool
#: call's arguments rarely pass 100 KiB); an expert that sends more without a blank line is broken.
MAX_EVENT_BYTES = 1 << 20


class EventTooLarge(UpstreamBodyError):
    """An upstream SSE event over ``MAX_EVENT_BYTES``: an upstream failure, like a broken body."""


async def sse_batches(chunks: AsyncIterator[bytes],
                      max_event_bytes: int = MAX_EVENT_BYTES) -> AsyncIterator[list[bytes]]:
    """Re-frame a byte stream into whole SSE events (each ending in a blank line), grouped by read.

    The events that one upstream read completes come out together, so the relay can hand them to the
    client in one write: no event waits for a later one, and a burst costs one send, not one per event.

    Linear in the bytes received: each chunk is scanned once (a partial event is kept as a list of
    pieces, not re-joined and re-searched per read), and an event that grows past ``max_event_bytes``
    raises ``EventTooLarge``. CRLF line ends become LF; a CR at the end of a read waits for the next.
    """
    pending: list[bytes] = []  # the pieces of the event in progress (no blank line among them)
    pending_size = 0
    carry = b""  # a LF and/or CR ending the previous read: the start of a separator, maybe
    async for chunk in chunks:
        if carry:
            chunk, carry = carry + chunk, b""
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
            if chunk.endswith(b"\r"):
                chunk, carry = chunk[:-1], b"\r"
        if not pending:  # blank lines between events separate nothing: drop them (as a whole read would)
            chunk = chunk.lstrip(b"\n")
        cut = chunk.rfind(b"\n\n") + 2
        complete, rest = (b"", chunk) if cut == 1 else (chunk[:cut], chunk[cut:])
        if rest.endswith(b"\n"):  # the blank line may complete with the next read
            rest, carry = rest[:-1], b"\n" + carry
        if complete and pending:
            complete = b"".join(pending) + complete
            pending.clear()
            pending_size = 0
        if rest:
            pending.append(rest)
            pending_size += len(rest)
            if pending_size > max_event_bytes:
                raise EventTooLarge(f"an SSE event passed {max_event_bytes} bytes without ending")
        if complete:
            events = [event + b"\n\n" for event in complete.split(b"\n\n") if event.strip()]
            if events:
                yield events
    tail = b"".join(pending)
    if tail.strip():
        yield [tail + b"\n\n"]


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


#: the events that end a stream: chat and completions send [DONE]; the Responses API ends with its
#: terminal event (completed, incomplete or failed) and no [DONE]
DONE_EVENTS = (b"data: [DONE]", b"data:[DONE]", b"event: response.completed", b"event: response.incomplete",
               b"event: response.failed")


def is_done(event: bytes) -> bool:
    """The event that ends an OpenAI stream (the space after the colon is optional)."""
    return event.startswith(DONE_EVENTS)


def is_usage_only(event: bytes) -> bool:
    """A chunk with no choices, just usage (what include_usage adds at the end)."""
    return b'"choices":[]' in event or b'"choices": []' in event
