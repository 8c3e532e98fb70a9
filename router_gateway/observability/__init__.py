"""Observability: Prometheus metrics, optional OpenTelemetry traces, per-request log lines and the live
view's aggregates, all fed by one observer on ``gateway.observers``."""
from __future__ import annotations

import logging
from typing import Any

from router_gateway.domain.record import RequestRecord
from router_gateway.observability.live import LiveView
from router_gateway.observability.metrics import GatewayMetrics
from router_gateway.observability.tracing import make_tracer

log = logging.getLogger("router_gateway.observability")
request_log = logging.getLogger("router_gateway.requests")


class Observability:
    """The gateway's observer: fans each record out to metrics, live view, tracer and a JSON log line.

    Runs on the request path, so every part is bounded and I/O-free (log lines go to the handler, which
    is skipped below DEBUG for successful requests). A failing part is logged, never raised into a request.
    """

    def __init__(self, gateway: Any = None, tracer: Any = None):
        self.metrics = GatewayMetrics(gateway)
        self.live = LiveView()
        self.tracer = tracer if tracer is not None else make_tracer()
        self._parts = [p for p in (self.metrics, self.live, self.tracer) if p is not None]

    def on_record(self, record: RequestRecord) -> None:
        for part in self._parts:
            try:
                part.on_record(record)
            except Exception:  # an observer bug must not fail the request it observes
                log.exception("observer %s failed on request %s", type(part).__name__, record.request_id)
        self._log_line(record)

    def on_embed_batch(self, size: int) -> None:
        self._batch("on_embed_batch", size)

    def on_score_batch(self, size: int) -> None:
        self._batch("on_score_batch", size)

    def _batch(self, method: str, size: int) -> None:
        """A batch shared by several requests (embedder or router) to every part; never raises."""
        for part in self._parts:
            try:
                getattr(part, method)(size)
            except Exception:
                log.exception("observer %s failed in %s(%d)", type(part).__name__, method, size)

    @staticmethod
    def _log_line(record: RequestRecord) -> None:
        status = int(record.status or 0)
        level = logging.WARNING if status >= 500 else logging.INFO if status >= 400 else logging.DEBUG
        if not request_log.isEnabledFor(level):
            return
        request_log.log(level, "request %s -> %s (%s) %s", record.profile or record.model,
                        record.chosen_expert or "-", status, record.error or "", extra={
                            "request_id": record.request_id, "expert": record.chosen_expert,
                            "profile": record.profile, "status": status, "router": record.router,
                            "latency_ms": record.latency_ms, "ttft_ms": record.ttft_ms,
                            "attempts": len(record.attempts), "cost_usd": record.cost_usd,
                            "key_id": record.key_id, "model": record.model})

    def close(self) -> None:
        if self.tracer is not None:
            self.tracer.shutdown()


def find(gateway: Any) -> Observability | None:
    """The gateway's Observability observer, if it has one."""
    return next((o for o in getattr(gateway, "observers", []) if isinstance(o, Observability)), None)
