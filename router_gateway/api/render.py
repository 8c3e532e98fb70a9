"""THE renderer: every JSON body, error and SSE header the API sends is built here.

FastAPI routes answer with ``json_response`` / ``error_response``; the plain ASGI chat handler sends with
``send_body`` / ``send_error``; both render a GatewayError the same way (``GatewayError.body_bytes``).
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from router_gateway.domain.errors import BadRequest, GatewayError, NotFound

log = logging.getLogger("router_gateway.api")
JSON = "application/json"
JSON_HEADER = (b"content-type", b"application/json")
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


def error_response(error: GatewayError) -> Response:
    return Response(error.body_bytes(), status_code=error.status, media_type=JSON, headers=error.headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError):
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in err.get("loc", ())[1:]) or None
        return error_response(BadRequest(f"{param}: {err['msg']}" if param else err["msg"], param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        error = NotFound(f"no route {request.method} {request.url.path}") if exc.status_code == 404 else \
            GatewayError(str(exc.detail))
        if exc.status_code != 404:
            error.status, error.type, error.code = exc.status_code, "invalid_request_error", "method_not_allowed"
        return error_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(GatewayError("internal error in the gateway"))


async def internal_error(send: Send, path: str) -> None:
    """A bug in the gateway: logged with its traceback, answered without it."""
    log.exception("unexpected error on POST %s", path)
    await send_error(send, GatewayError("internal error in the gateway"))


async def send_error(send: Send, error: GatewayError, extra: dict[str, str] | None = None) -> None:
    await send_body(send, error.status, error.body_bytes(), [JSON_HEADER], {**error.headers, **(extra or {})})


async def send_body(send: Send, status: int, body: bytes, base: list[tuple[bytes, bytes]],
                    headers: dict[str, str]) -> None:
    raw = base + [(b"content-length", str(len(body)).encode())] + encode_headers(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def encode_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
