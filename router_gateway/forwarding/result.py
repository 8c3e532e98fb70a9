"""What forwarding returns: the attempts made and the answer (a body, or a stream already started).

Its own module so that every provider (the HTTP/1.1 forwarder, the LiteLLM provider) builds results
without importing the forwarder.
"""
from __future__ import annotations

from dataclasses import dataclass

from router_gateway.domain.record import Attempt
from router_gateway.forwarding.relay import Relay

__all__ = ["Attempt", "ForwardResult"]


@dataclass
class ForwardResult:
    """What came back: a whole body, or a stream whose first event is already in hand. A stream's
    status and usage as it ends are its relay's (``stream.outcome``): ``status`` here is the status it
    opened with."""

    expert: str
    status: int
    attempts: list[Attempt]
    body: bytes = b""
    usage: dict | None = None
    stream: Relay | None = None
    ttft_ms: float | None = None
