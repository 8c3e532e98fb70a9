"""The FastAPI routes of the OpenAI-style API and the admin endpoints (chat itself is api.chat)."""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from router_gateway.api.deps import Admin, Caller, is_admin_caller, read_json_body
from router_gateway.api.render import JSON, json_response
from router_gateway.cascade.service import route_view as cascade_route_view
from router_gateway.domain.errors import BadRequest, NotFound
from router_gateway.domain.protocol import parse_chat_request
from router_gateway.pipeline import new_request_id
from router_gateway.routing.key_access import check_model_allowed, reachable_experts
from router_gateway.state.sessions import session_ref

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


def body_schema(schema: dict) -> dict:
    return {"requestBody": {"required": True, "content": {JSON: {"schema": schema}}}}


def install_routes(app: FastAPI) -> None:
    @app.post("/v1/route", openapi_extra=body_schema(CHAT_SCHEMA))
    async def route(request: Request, key: Caller):
        gateway = request.app.state.gateway
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

    @app.post("/v1/feedback", openapi_extra=body_schema(FEEDBACK_SCHEMA))
    async def feedback(request: Request, key: Caller):
        gateway = request.app.state.gateway
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
        if not is_admin_caller(request):
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
        gateway = request.app.state.gateway
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


def public_readiness(checks: dict) -> dict:
    """/ready for callers without an admin key: status booleans only."""
    out = {"config": bool(checks.get("config")), "embedder": bool(checks.get("embedder")),
           "experts_reachable": bool(checks.get("experts_reachable")),
           "keys_ok": checks.get("keys", {}).get("ok", True), "reload_ok": "last_reload_error" not in checks}
    if "shared_state" in checks and checks["shared_state"].get("backend") == "redis":
        out["shared_state"] = {"connected": bool(checks["shared_state"].get("connected"))}
    return out
