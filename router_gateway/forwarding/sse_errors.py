"""Error events an upstream sends inside a stream that otherwise ends normally.

vLLM reports a failure during generation as an SSE event, ``data: {"error": {..., "code": 500}}``
(older versions: ``data: {"object": "error", ..., "code": 500}``), often followed by ``[DONE]``. The
stream looks complete, yet the expert failed: such an event with a 5xx code (or none) counts against
the expert's stream breaker. A 4xx code is the request's fault: counting it would let a client take
an expert out of rotation by sending bad requests.
"""
from __future__ import annotations

import orjson

_MARK = b'"error"'


def upstream_error_status(event: bytes) -> int | None:
    """The HTTP-like status of an in-band error event (500 if it names none); None for other events."""
    if not event.startswith(b"data: {") or _MARK not in event[:48]:
        return None  # every ordinary chunk starts with "id" or "choices": one cheap look, no parsing
    try:
        data = orjson.loads(event[6:])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error") if isinstance(data.get("error"), dict) else None
    if error is None and data.get("object") == "error":
        error = data
    if error is None:
        return None
    code = error.get("code")
    return code if isinstance(code, int) and 100 <= code <= 599 else 500


def counts_against_expert(event: bytes) -> bool:
    status = upstream_error_status(event)
    return status is not None and status >= 500
