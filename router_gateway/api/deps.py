"""What the handlers depend on: the caller's key (auth) and the request body (size limit, JSON, depth)."""
from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from router_gateway.api.json_depth import MAX_JSON_DEPTH, json_too_deep
from router_gateway.domain.errors import (
    AuthenticationFailed,
    BadRequest,
    GatewayError,
    KeysUnavailable,
    PayloadTooLarge,
    PermissionDenied,
)
from router_gateway.state.keys import ApiKey, presented_key


async def read_json_body(request: Request, limit: int) -> tuple[Any, int]:
    """Read the body within ``limit`` bytes (413 beyond) and decode JSON (400 if invalid)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if isinstance(body, (dict, list)) and json_too_deep(raw, body):
        raise BadRequest(f"request body nests deeper than {MAX_JSON_DEPTH} levels")
    return body, size


def authenticate(request: Request) -> ApiKey | None:
    """The caller's key; None when no keys file was ever seen (the gateway is then loopback-only)."""
    keys = request.app.state.gateway.keys
    if keys is None or not keys.required:
        return None
    if keys.problem is not None:  # fail closed: the file's details are in the log, not the answer
        raise KeysUnavailable("API keys are unavailable on this gateway: every request is refused until "
                              "the operator restores the keys file")
    secret = presented_key(request.headers)
    if not secret:
        raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>' or 'x-api-key'")
    key = keys.verify(secret)
    if key is None:
        raise AuthenticationFailed("invalid or revoked API key")  # never echo what was sent
    return key


def authenticate_admin(request: Request) -> ApiKey | None:
    """Admin endpoints: an admin-scope key when keys exist, else loopback callers only."""
    keys = request.app.state.gateway.keys
    if keys is None or not keys.required:
        require_loopback_admin(request)
        return None
    key = authenticate(request)
    if not key.is_admin:
        raise PermissionDenied(f"key {key.id} lacks the admin scope")
    return key


async def caller_key(request: Request) -> ApiKey | None:
    return authenticate(request)  # async: FastAPI would run a plain function in a worker thread


async def admin_key(request: Request) -> ApiKey | None:
    return authenticate_admin(request)


Caller = Annotated[ApiKey | None, Depends(caller_key)]
Admin = Annotated[ApiKey | None, Depends(admin_key)]


def is_admin_caller(request: Request) -> bool:
    """Whether this caller may use the admin endpoints (without raising: /ready answers everyone)."""
    try:
        authenticate_admin(request)
        return True
    except GatewayError:
        return False


def require_loopback_admin(request: Request) -> None:
    """Without API keys, admin calls are accepted from loopback only."""
    host = request.client.host if request.client else ""
    if host not in ("127.0.0.1", "::1", "localhost", "testclient"):
        raise PermissionDenied("admin endpoints need an admin key")
