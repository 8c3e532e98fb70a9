"""Admin endpoints of the learning loop (what ``router-gateway learning ...`` calls).

GET /admin/learning                 status: labels, shadow spend, live and candidate metrics, history
POST /admin/learning/retrain        retrain now; promote when the gate passes (and promote.auto)
POST /admin/learning/promote        retrain now and promote when the gate passes, even if auto is off
POST /admin/learning/revert         back to the previous artifact (or the configured router)
"""
from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from router_gateway.domain.errors import NotFound


def json_response(data) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def _service(request: Request):
    service = getattr(request.app.state.gateway, "learning", None)
    if service is None:
        raise NotFound("the learning loop is not configured (no learning: section in experts.yaml)")
    return service


def install_learning_routes(app: FastAPI, admin_dependency) -> None:
    deps = [admin_dependency]

    @app.get("/admin/learning", dependencies=deps)
    async def learning_status(request: Request):
        return json_response(await _service(request).status())

    @app.post("/admin/learning/retrain", dependencies=deps)
    async def learning_retrain(request: Request):
        return json_response(await _service(request).retrain())

    @app.post("/admin/learning/promote", dependencies=deps)
    async def learning_promote(request: Request):
        return json_response(await _service(request).retrain(promote=True))

    @app.post("/admin/learning/revert", dependencies=deps)
    async def learning_revert(request: Request):
        live = await _service(request).revert()
        return json_response({"live": live or "configured router"})
