"""Why nobody can serve a request, as a status the client can act on.

Static causes come from the request, the profile or the key, and a retry cannot change them: no
configured expert has a needed capability, the prompt exceeds every expert's context window, the
allow-lists exclude everyone. They are a 400 with a ``param`` and a ``code`` (OpenAI's
``context_length_exceeded`` for the window), so the openai client does not retry them and operators'
outage alerts do not count them. Transient causes (down, circuit open, saturated) stay 503 / 429 with
Retry-After (services.routing.nobody_eligible).
"""
from __future__ import annotations

from router_gateway.domain.errors import BadRequest

CONTEXT = "context window"
CAPABILITY = "lacks capability "
#: capability -> the request field that asks for it
CAPABILITY_PARAMS = {"tools": "tools", "json": "response_format", "vision": "messages"}


def static_ineligibility(reasons: dict[str, str]) -> BadRequest:
    """The 400 for a request every expert refuses for static reasons (``reasons``: expert -> why)."""
    detail = "; ".join(f"{k}: {v}" for k, v in reasons.items())
    missing = [r[len(CAPABILITY):].split(", ") for r in reasons.values() if r.startswith(CAPABILITY)]
    if missing:
        first = missing[0][0]
        return BadRequest(f"no configured expert that may serve this request has the capability it needs "
                          f"({detail})", param=CAPABILITY_PARAMS.get(first, first), code="unsupported_capability")
    if any(r.startswith(CONTEXT) for r in reasons.values()):
        return BadRequest(f"the prompt and max_tokens exceed the context window of every expert that may "
                          f"serve it ({detail})", param="messages", code="context_length_exceeded")
    return BadRequest(f"the profile's and the API key's expert lists leave no expert for this request ({detail})",
                      param="model", code="no_allowed_expert")
