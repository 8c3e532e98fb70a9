"""The app factory: FastAPI app whose lifespan builds the gateway; thin handlers; one error renderer."""
from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from router_gateway import __version__
from router_gateway import chat_endpoint, http_server
from router_gateway.auth import ApiKey, presented_key
from router_gateway.cascade.service import route_view as cascade_route_view
from router_gateway.errors import (AuthenticationFailed, BadRequest, GatewayError, KeysUnavailable, NotFound,
                                   PayloadTooLarge, PermissionDenied)
from router_gateway.gateway import Gateway, GatewayOptions
from router_gateway.openai_endpoints import ROUTES
from router_gateway.services.sessions import session_ref
from router_gateway.json_depth import MAX_JSON_DEPTH, json_too_deep
from router_gateway.key_access import check_model_allowed, reachable_experts
from router_gateway.ops_routes import install_ops_routes
from router_gateway.protocol import parse_chat_request
from router_gateway.services.chat import ChatService, new_request_id

log = logging.getLogger("router_gateway.api")
JSON = "application/json"


class GatewayApp(FastAPI):
    """FastAPI, with POST /v1/chat/completions served by chat_endpoint before FastAPI's own stack."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and (path := chat_endpoint.route_path(scope)) in ROUTES:
            scope["app"] = self
            gateway = getattr(self.state, "gateway", None)
            if gateway is not None:  # until the answer is sent (background work waits on it: learning)
                gateway.clients_in_flight += 1
            try:
                await chat_endpoint.handle_chat(self, scope, receive, send, path)
            finally:
                if gateway is not None:
                    gateway.clients_in_flight -= 1
            return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema plus the chat endpoint, which is not a FastAPI route."""
        if self.openapi_schema is None:
            schema = super().openapi()
            schema["paths"] = {chat_endpoint.PATH: {"post": {
                "summary": "Chat Completions", "operationId": "chat_completions",
                **_body(CHAT_SCHEMA),
                "responses": {"200": {"description": "The expert's completion (JSON, or SSE when stream is true)",
                                      "content": {JSON: {"schema": {}}}}}}}, **schema["paths"]}
        return self.openapi_schema


def create_app(options: GatewayOptions) -> FastAPI:
    """Build the ASGI app; nothing is loaded until the lifespan starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        gateway = Gateway(options)
        await gateway.start()
        app.state.gateway = gateway
        app.state.chat = ChatService(gateway)
        http_server.configure(gateway.runtime.config.server)  # limits of the connections uvicorn reads
        tune_gc()
        try:
            yield
        finally:
            gateway.draining = True
            await gateway.close()

    app = GatewayApp(title="router-gateway", version=__version__, lifespan=lifespan)
    _install_error_handlers(app)
    _install_routes(app)
    install_ops_routes(app)
    from router_gateway.learning.routes import install_learning_routes
    install_learning_routes(app, Depends(admin_key))
    return app


def tune_gc() -> None:
    """Keep the collector's pauses off the tail latency of requests.

    The loaded gateway holds ~100k long-lived objects (modules, config, routers) and each full collection
    walked them all: 10-30 ms pauses, much of the p99 of the c=32 pass-through bench (10 full collections
    in a 40 s run, the longest 31 ms; p99 22-33 ms without the freeze, 9-12 ms with it, in dev runs). ``gc.freeze()`` moves everything alive after startup
    out of the collector's reach; what requests allocate is still collected as before.
    """
    gc.collect()
    gc.freeze()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


def error_response(error: GatewayError) -> Response:
    return Response(error.body_bytes(), status_code=error.status, media_type=JSON, headers=error.headers)


def _install_error_handlers(app: FastAPI) -> None:
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
        _require_loopback_admin(request)
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

# The handlers read the raw body (for the byte limit and pass-through), so FastAPI cannot infer the
# request schemas: they are declared here for /openapi.json (clients, docs, the schemathesis fuzz).
CHAT_SCHEMA = {
    "type": "object", "required": ["model", "messages"],  # other fields are accepted and forwarded
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "messages": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["role"],
            "properties": {"role": {"type": "string", "minLength": 1},
                           "content": {"anyOf": [{"type": "string"}, {"type": "null"},
                                                 {"type": "array", "items": {"type": "object"}}]}}}},
        "stream": {"type": "boolean"},
        "max_tokens": {"type": ["integer", "null"], "minimum": 1},
        "max_completion_tokens": {"type": ["integer", "null"], "minimum": 1},
        "temperature": {"type": "number"},
        "tools": {"type": ["array", "null"], "items": {"type": "object"}},
        "response_format": {"type": ["object", "null"]},
        "stream_options": {"type": ["object", "null"], "properties": {"include_usage": {"type": ["boolean", "null"]}}},
        "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 128},
    },
}
FEEDBACK_SCHEMA = {
    "type": "object", "required": ["request_id", "score"],
    "properties": {"request_id": {"type": "string", "minLength": 1},
                   "score": {"type": "number", "minimum": 0, "maximum": 1}},
}


def _body(schema: dict) -> dict:
    return {"requestBody": {"required": True, "content": {JSON: {"schema": schema}}}}


def _install_routes(app: FastAPI) -> None:
    @app.post("/v1/route", openapi_extra=_body(CHAT_SCHEMA))
    async def route(request: Request, key: Caller):
        gateway: Gateway = request.app.state.gateway
        body, size = await read_json_body(request, gateway.runtime.config.server.max_body_bytes)
        chat = parse_chat_request(body)
        runtime = gateway.acquire()
        try:
            if key is not None:
                check_model_allowed(key, chat, runtime.config)
            decision = await runtime.routing.decide(chat, size, new_request_id(),
                                                    request.headers.get("x-router-cost-weight"),
                                                    reachable_experts(key, runtime.config),
                                                    session=session_ref(request.headers, body, chat.messages,
                                                                        key.id if key else None))
            # shows the session's pin (nothing is pinned by it) and a cascade profile's tiers
            view = {**decision.as_dict(), **cascade_route_view(runtime, decision)}
        finally:
            gateway.release(runtime)
        return json_response(view)

    @app.get("/v1/models")
    async def models(request: Request, key: Caller):
        config = request.app.state.gateway.runtime.config
        # a restricted key sees what it may use, not the whole registry
        profiles = [n for n in config.profiles if key is None or not key.allowed_profiles or n in key.allowed_profiles]
        reach = reachable_experts(key, config)
        data = [{"id": name, "object": "model", "owned_by": "router-gateway", "kind": "profile",
                 "router": config.profiles[name].router, "cost_weight": config.profiles[name].cost_weight}
                for name in profiles]
        data += [{"id": name, "object": "model", "owned_by": "router-gateway", "kind": "expert",
                  "served_model": e.model, "context_window": e.context_window,
                  "capabilities": list(e.capabilities), "domains": list(e.domains),
                  "price": e.price.model_dump()} for name, e in config.experts.items()
                 if reach is None or name in reach]
        return json_response({"object": "list", "data": data})

    @app.post("/v1/feedback", openapi_extra=_body(FEEDBACK_SCHEMA))
    async def feedback(request: Request, key: Caller):
        gateway: Gateway = request.app.state.gateway
        body, _ = await read_json_body(request, 64 * 1024)
        request_id, score = _feedback_fields(body)
        extra = {k: v for k, v in body.items() if k not in ("request_id", "score")}
        # a key scores only its own requests (admin keys any): unknown and foreign ids look the same
        owner = key.id if key is not None and not key.is_admin else None
        if not await gateway.request_log.add_feedback(request_id, score, extra, only_key=owner):
            raise NotFound(f"unknown request_id {request_id!r}", param="request_id")
        learned = await gateway.online.learn(request_id, score) if gateway.online else False
        return json_response({"request_id": request_id, "score": score, "status": "recorded",
                              "router_updated": learned})

    @app.get("/health")
    async def health():
        return json_response({"status": "ok"})

    @app.get("/ready")
    async def ready(request: Request):
        ok, checks = request.app.state.gateway.ready()
        if not _is_admin_caller(request):
            checks = public_readiness(checks)  # no paths, names or addresses without an admin key
        return json_response({"ready": ok, **checks}, status=200 if ok else 503)

    @app.post("/admin/reload")
    async def reload(request: Request, key: Admin):
        ok, message = await request.app.state.gateway.reload()
        if not ok:
            raise BadRequest(f"reload refused, old config keeps serving: {message}")
        return json_response({"status": "reloaded", "message": message})

    @app.get("/admin/state")
    async def state(request: Request, key: Admin):
        gateway: Gateway = request.app.state.gateway
        return json_response({"config_version": gateway.runtime.version, "experts": gateway.state.snapshot(),
                              "shared_state": gateway.shared.status() if gateway.shared else None,
                              "embed_cache": {"hits": gateway.embedder.cache.hits,
                                              "misses": gateway.embedder.cache.misses}})


def _feedback_fields(body: Any) -> tuple[str, float]:
    if not isinstance(body, dict):
        raise BadRequest("feedback body must be a JSON object")
    request_id, score = body.get("request_id"), body.get("score")
    if not isinstance(request_id, str) or not request_id:
        raise BadRequest("request_id: a string is required", param="request_id")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
        raise BadRequest("score: a number in [0, 1] is required", param="score")
    return request_id, float(score)


def _is_admin_caller(request: Request) -> bool:
    """Whether this caller may use the admin endpoints (without raising: /ready answers everyone)."""
    try:
        authenticate_admin(request)
        return True
    except GatewayError:
        return False


def public_readiness(checks: dict) -> dict:
    """/ready for callers without an admin key: status booleans only."""
    out = {"config": bool(checks.get("config")), "embedder": bool(checks.get("embedder")),
           "experts_reachable": bool(checks.get("experts_reachable")),
           "keys_ok": checks.get("keys", {}).get("ok", True), "reload_ok": "last_reload_error" not in checks}
    if "shared_state" in checks and checks["shared_state"].get("backend") == "redis":
        out["shared_state"] = {"connected": bool(checks["shared_state"].get("connected"))}
    return out


def _require_loopback_admin(request: Request) -> None:
    """Without API keys, admin calls are accepted from loopback only."""
    host = request.client.host if request.client else ""
    if host not in ("127.0.0.1", "::1", "localhost", "testclient"):
        raise PermissionDenied("admin endpoints need an admin key")
