"""One exception hierarchy, rendered in one place in OpenAI's error shape.

``{"error": {"message", "type", "param", "code"}}`` with the status the ``openai`` client maps to its
own exception classes (400 BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError,
404 NotFoundError, 413/422 APIStatusError, 429 RateLimitError, 5xx InternalServerError).
"""
from __future__ import annotations

from typing import Any

import orjson


class GatewayError(Exception):
    """Base of every error the gateway answers with; subclasses fix status and type."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def body_bytes(self) -> bytes:
        return orjson.dumps(self.body())


class BadRequest(GatewayError):
    """Malformed JSON, schema violations, limits exceeded (400)."""

    status, type, code = 400, "invalid_request_error", "invalid_request"


class AuthenticationFailed(GatewayError):
    """Missing or unknown API key (401)."""

    status, type, code = 401, "authentication_error", "invalid_api_key"


class PermissionDenied(GatewayError):
    """A valid key asking for something its scope does not allow (403)."""

    status, type, code = 403, "permission_error", "permission_denied"


class ModelNotFound(GatewayError):
    """``model`` names neither a profile nor an expert (404)."""

    status, type, code = 404, "invalid_request_error", "model_not_found"


class NotFound(GatewayError):
    """An unknown resource such as a request id given to /v1/feedback (404)."""

    status, type, code = 404, "invalid_request_error", "not_found"


class MethodNotAllowed(GatewayError):
    """An HTTP method the endpoint does not serve (405)."""

    status, type, code = 405, "invalid_request_error", "method_not_allowed"


class PayloadTooLarge(GatewayError):
    """Request body larger than ``server.max_body_bytes`` (413)."""

    status, type, code = 413, "invalid_request_error", "request_too_large"


class RateLimited(GatewayError):
    """Per-key rate limit, budget, or every eligible expert saturated (429)."""

    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class BudgetExhausted(RateLimited):
    """The key's USD budget for the period is spent (429, OpenAI's ``insufficient_quota``)."""

    type, code = "insufficient_quota", "insufficient_quota"


class UpstreamError(GatewayError):
    """Every attempted expert failed, or the chosen expert answered with an error (502)."""

    status, type, code = 502, "upstream_error", "upstream_error"


class NoExpertAvailable(GatewayError):
    """No expert is eligible for this request (503)."""

    status, type, code = 503, "service_unavailable", "no_expert_available"


class KeysUnavailable(GatewayError):
    """Access control is on but the keys file is missing, empty or unreadable: fail closed (503)."""

    status, type, code = 503, "service_unavailable", "keys_unavailable"


class UpstreamTimeout(GatewayError):
    """The expert did not answer in time (504)."""

    status, type, code = 504, "timeout_error", "upstream_timeout"


class ClientClosedRequest(GatewayError):
    """The client went away before its answer was complete (499, nginx's convention): only logged,
    since nobody is left to receive it."""

    status, type, code = 499, "client_closed_request", "client_closed_request"


class GatewayShuttingDown(GatewayError):
    """The gateway cut the request itself: still running when the shutdown's drain timeout ended (503).
    Only logged, like 499: the connection is closed with it."""

    status, type, code = 503, "service_unavailable", "gateway_shutting_down"


def sse_error_event(error: GatewayError) -> bytes:
    """A mid-stream error as a final SSE event (followed by ``data: [DONE]``)."""
    return b"data: " + error.body_bytes() + b"\n\ndata: [DONE]\n\n"
