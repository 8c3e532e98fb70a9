"""Optional OpenTelemetry traces, exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set.

Off and free otherwise: nothing from opentelemetry is imported. Spans are built after the fact from the
request record, whose timings are known (``ts``, ``embed_ms``, ``route_ms``, each attempt's ``ms``,
``latency_ms``): one ``chat`` span per request with ``embed``, ``route`` and ``forward`` children and one
``attempt`` span per upstream try under ``forward``. Stage start times are laid end to end from the
request's start, so a few microseconds of parsing between stages are attributed to the next stage: good
enough to see where time goes without touching the hot path. The SDK's batch processor exports from its
own thread. Standard ``OTEL_*`` variables (service name, headers, sampler, batch delay) apply.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from router_gateway.domain.record import RequestRecord

log = logging.getLogger("router_gateway.tracing")
ENV = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def tracing_requested() -> bool:
    return any(os.environ.get(name) for name in ENV) and os.environ.get("OTEL_SDK_DISABLED", "").lower() != "true"


def make_tracer(exporter: Any = None) -> "RecordTracer | None":
    """A RecordTracer when an OTLP endpoint is configured (or an exporter is given), else None."""
    if exporter is None and not tracing_requested():
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SimpleSpanProcessor,
        )
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
            exporter, processor_cls = OTLPSpanExporter(), BatchSpanProcessor
        else:
            processor_cls = SimpleSpanProcessor
    except ImportError as exc:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but tracing is unavailable (%s): "
                    "install the 'otel' extra: pip install 'router-gateway[otel]'", exc)
        return None
    name = os.environ.get("OTEL_SERVICE_NAME", "router-gateway")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(processor_cls(exporter))
    log.info("OpenTelemetry tracing on: exporting spans over OTLP as %r", name)
    return RecordTracer(provider)


class RecordTracer:
    """Turns request records into spans (see the module docstring)."""

    def __init__(self, provider: Any):
        from opentelemetry import trace
        self._trace = trace
        self.provider = provider
        self.tracer = provider.get_tracer("router_gateway")

    def on_record(self, record: RequestRecord) -> None:
        trace = self._trace
        start = int(float(record.ts or 0) * 1e9)
        end = start + _ns(record.latency_ms)
        attrs = {"gateway.request_id": record.request_id or "", "gateway.profile": record.profile or "",
                 "gateway.router": record.router or "", "gateway.expert": record.chosen_expert or "",
                 "http.response.status_code": int(record.status or 0), "gen_ai.request.model": record.model or ""}
        for key, value in (("prompt_tokens", record.prompt_tokens), ("completion_tokens", record.completion_tokens),
                           ("cost_usd", record.cost_usd), ("ttft_ms", record.ttft_ms)):
            if value is not None:
                attrs[f"gateway.{key}"] = value
        root = self.tracer.start_span("chat", start_time=start, attributes=attrs, kind=trace.SpanKind.SERVER)
        if int(record.status or 0) >= 400:
            root.set_status(trace.Status(trace.StatusCode.ERROR, record.error or ""))
        ctx = trace.set_span_in_context(root)
        t = start
        for stage, ms in (("embed", record.embed_ms), ("route", record.route_ms)):
            if ms is not None:
                t = self._child(stage, ctx, t, _ns(ms), {})
        attempts = record.attempts
        if attempts:
            forward = self.tracer.start_span("forward", context=ctx, start_time=t,
                                             attributes={"gateway.attempts": len(attempts)})
            fctx = trace.set_span_in_context(forward)
            for i, a in enumerate(attempts):
                span_end = self._child("attempt", fctx, t, _ns(round(a.ms, 2)),
                                       {"gateway.expert": a.expert or "", "gateway.outcome": a.outcome or "",
                                        "gateway.attempt": i + 1}, error=a.outcome != "ok")
                t = span_end
            forward.end(end_time=max(end, t))
        root.end(end_time=max(end, t))

    def _child(self, name: str, ctx: Any, start: int, duration: int, attrs: dict, error: bool = False) -> int:
        span = self.tracer.start_span(name, context=ctx, start_time=start, attributes=attrs)
        if error:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end(end_time=start + duration)
        return start + duration

    def on_embed_batch(self, size: int) -> None:
        """Batches are shared by several requests: not a span of any one of them."""

    def on_score_batch(self, size: int) -> None:
        """The same for the router's batches."""

    def shutdown(self) -> None:
        self.provider.shutdown()


def _ns(ms: Any) -> int:
    return int(float(ms or 0) * 1e6)
