"""Operations endpoints mounted beside the API: ``/metrics`` (Prometheus) and the live view ``/ui``.

The page itself (``/ui``, its JS and CSS) holds no data and is open; what carries data (``/metrics``,
``/ui/data``, ``/ui/frontier/<table>.png``) needs an admin-scope key when keys exist, else a loopback
caller, like the other admin endpoints. ``ROUTER_GATEWAY_PUBLIC_METRICS=1`` opens ``/metrics`` to any
caller (Prometheus scraping pod IPs in a cluster without keys); it holds counts, key ids and no prompts.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, Response

from router_gateway.api.deps import admin_key, authenticate_admin
from router_gateway.domain.errors import NotFound

STATIC = Path(__file__).resolve().parents[1] / "static"
TABLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")
STATIC_FILES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


def reports_dir() -> Path:
    """Where the eval writes ``<table>/frontier.png``: $ROUTER_GATEWAY_EVAL_REPORTS, else ./eval/reports,
    else the source checkout's eval/reports."""
    configured = os.environ.get("ROUTER_GATEWAY_EVAL_REPORTS")
    if configured:
        return Path(configured)
    local = Path.cwd() / "eval" / "reports"
    return local if local.is_dir() else Path(__file__).resolve().parents[2] / "eval" / "reports"


def frontier_tables() -> list[str]:
    root = reports_dir()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/frontier.png") if TABLE_NAME.match(p.parent.name))


def install_ops_routes(app: FastAPI) -> None:
    """Add /metrics and the /ui routes."""

    async def metrics_access(request: Request) -> None:  # async: no worker-thread hop
        if os.environ.get("ROUTER_GATEWAY_PUBLIC_METRICS", "") not in ("1", "true", "yes"):
            authenticate_admin(request)

    admin = [Depends(admin_key)]  # (dependencies=, not annotations: this module's are strings)

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_access)])
    async def metrics(request: Request):
        from router_gateway.observability.metrics import CONTENT_TYPE
        return Response(_observability(request).metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/ui", include_in_schema=False)
    async def ui_page():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"cache-control": "no-cache"})

    @app.get("/ui/static/{name}", include_in_schema=False)
    async def ui_static(name: str):
        if name not in STATIC_FILES:
            raise NotFound(f"no static file {name!r}")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers={"cache-control": "no-cache"})

    @app.get("/ui/data", include_in_schema=False, dependencies=admin)
    async def ui_data(request: Request):
        return Response(orjson.dumps(live_payload(request.app.state.gateway)), media_type="application/json")

    @app.get("/ui/frontier/{table}.png", include_in_schema=False, dependencies=admin)
    async def ui_frontier(table: str):
        path = reports_dir() / table / "frontier.png"
        if not TABLE_NAME.match(table) or not path.is_file():
            raise NotFound(f"no frontier plot for table {table!r}")
        return FileResponse(path, media_type="image/png")


def _observability(request: Request):
    from router_gateway.observability import find
    obs = find(request.app.state.gateway)
    if obs is None:
        raise NotFound("observability is not running in this gateway")
    return obs


def live_payload(gateway: Any) -> dict[str, Any]:
    """The live view's JSON: aggregates from the observer plus current expert state and config."""
    from router_gateway.observability import find
    obs = find(gateway)
    data = obs.live.data() if obs else {}
    runtime = gateway.runtime
    config = runtime.config if runtime else None
    state = gateway.state.snapshot()
    engines = gateway.capacity.snapshot() if getattr(gateway, "capacity", None) else {}
    experts = []
    if config is not None:
        for name, e in config.experts.items():
            row = state.get(name, {"circuit": "closed", "stream_circuit": "closed", "inflight": 0,
                                   "health": "ok"})
            experts.append({"name": name, "model": e.model, **row, "max_concurrency": e.max_concurrency,
                            "price": e.price.model_dump(), "engine": engines.get(name)})
    data["experts"] = experts
    data["config_version"] = runtime.version if runtime else None
    data["routers"] = {n: r.type for n, r in config.routers.items()} if config else {}
    data["profiles"] = {n: {"router": p.router, "cost_weight": p.cost_weight, "latency_weight": p.latency_weight,
                            "pacing": p.pacing.model_dump() if p.pacing else None,
                            "budget": p.budget.model_dump() if p.budget else None}
                        for n, p in config.profiles.items()} if config else {}
    pacer = getattr(gateway, "pacer", None)
    data["pacing"] = pacer.snapshot() if pacer is not None else {}
    data["frontier"] = [{"table": t, "url": f"/ui/frontier/{t}.png"} for t in frontier_tables()]
    learning = getattr(gateway, "learning", None)
    data["learning"] = learning.brief() if learning is not None else None
    return data
