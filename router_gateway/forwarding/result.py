"""What forwarding returns: the attempts made and the answer (a body, or a stream already started).

Its own module so that every provider (the HTTP/1.1 forwarder, the LiteLLM provider) builds results
without importing the forwarder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator


@dataclass
class Attempt:
    """One try at one expert, for the log and the response headers."""

    expert: str
    outcome: str  # ok | connect_error | timeout | http_<status> | protocol_error
    ms: float

    def as_dict(self) -> dict[str, Any]:
        return {"expert": self.expert, "outcome": self.outcome, "ms": round(self.ms, 2)}


@dataclass
class ForwardResult:
    """What came back: a whole body, or a stream whose first event is already in hand."""

    expert: str
    status: int
    attempts: list[Attempt]
    body: bytes = b""
    usage: dict | None = None
    stream: AsyncIterator[bytes] | None = None
    ttft_ms: float | None = None
    stream_state: dict[str, Any] = field(default_factory=dict)
