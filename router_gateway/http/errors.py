"""The one vocabulary of the HTTP client's failures, whoever calls it (forwarder, health checks, engine
metrics). The forwarder maps them to its attempt outcomes and the client-facing GatewayErrors."""
from __future__ import annotations


class UpstreamTransportError(Exception):
    """The HTTP exchange with an upstream failed (the base of the errors below)."""


class UpstreamConnectError(UpstreamTransportError):
    """No response: the connection could not be made, or it broke or sent garbage before the headers."""


class UpstreamBodyError(UpstreamTransportError):
    """The response broke off after its headers (connection lost, bad framing, read timeout)."""


class UpstreamBodyTimeout(UpstreamBodyError):
    """The body was not complete within the read timeout or by the caller's deadline."""


class UpstreamBodyTooLarge(UpstreamBodyError):
    """The body is larger than the caller's limit (``Response.read(max_bytes)``)."""
