"""Prometheus metrics fed from the per-request records (``on_record``) and the embedder (``on_embed_batch``).

Counters and histograms are updated on the hot path: each update is a dict lookup plus a short lock inside
prometheus_client, no I/O. What describes the gateway's *current* state (circuit breakers, in-flight
requests, config version) is not updated per request: a custom collector reads ``gateway.state.snapshot()``
when Prometheus scrapes.

Several uvicorn workers on one port: ``router-gateway serve --workers N`` sets ``PROMETHEUS_MULTIPROC_DIR``
to a fresh directory, so counters and histograms are written to per-process files and summed at scrape time
by whichever worker answers. The state gauges (``router_gateway_expert_inflight``,
``router_gateway_circuit_state``, ``router_gateway_expert_healthy``, ``router_gateway_config_version``) are
per-process: they describe the worker that answered the scrape and carry its ``pid`` label. With Redis
shared state the breaker state and in-flight counts are the fleet's (as last synced), so any worker's
view is representative.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from router_gateway.domain.record import RequestRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NS = "router_gateway"
NONE = "none"  # label value for a missing profile / expert / key
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CIRCUIT_STATES = ("closed", "half_open", "open")


def multiprocess_dir() -> str | None:
    """The prometheus_client multiprocess directory, when several workers share a port."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


class StateCollector(Collector):
    """Scrape-time gauges from the gateway's expert state (per process; see the module docstring)."""

    def __init__(self, gateway: Any, per_process: bool):
        self.gateway = gateway
        self.per_process = per_process

    def collect(self) -> Iterable[GaugeMetricFamily]:
        extra = ["pid"] if self.per_process else []
        pid = [str(os.getpid())] if self.per_process else []
        inflight = GaugeMetricFamily(f"{NS}_expert_inflight", "requests in flight to the expert (this "
                                     "replica's plus other replicas' as last synced)", labels=["expert", *extra])
        circuit = GaugeMetricFamily(f"{NS}_circuit_state", "circuit breaker state: 1 for the current state",
                                    labels=["expert", "state", *extra])
        stream_circuit = GaugeMetricFamily(f"{NS}_stream_circuit_state", "the expert's breaker for streams "
                                           "(services.expert_state): 1 for the current state",
                                           labels=["expert", "state", *extra])
        healthy = GaugeMetricFamily(f"{NS}_expert_healthy", "1 when the last active health check passed",
                                    labels=["expert", *extra])
        state = self.gateway.state
        snap = state.snapshot()
        names = set(snap)
        runtime = getattr(self.gateway, "runtime", None)
        if runtime is not None:
            names |= set(runtime.config.experts)
        for name in sorted(names):
            row = snap.get(name, {"circuit": "closed", "stream_circuit": "closed", "inflight": 0, "health": "ok"})
            inflight.add_metric([name, *pid], row["inflight"])
            for s in CIRCUIT_STATES:
                circuit.add_metric([name, s, *pid], 1.0 if row["circuit"] == s else 0.0)
                stream_circuit.add_metric([name, s, *pid], 1.0 if row["stream_circuit"] == s else 0.0)
            healthy.add_metric([name, *pid], 1.0 if row["health"] == "ok" else 0.0)
        yield from (inflight, circuit, stream_circuit, healthy)
        yield from self._capacity(extra, pid)
        if runtime is not None:
            version = GaugeMetricFamily(f"{NS}_config_version", "config version serving requests", labels=extra)
            version.add_metric(pid, runtime.version)
            yield version


    def _capacity(self, extra: list[str], pid: list[str]) -> Iterable[GaugeMetricFamily]:
        """Engine load read from the experts' /metrics, and the budget pacer's effective cost weights."""
        capacity = getattr(self.gateway, "capacity", None)
        pacer = getattr(self.gateway, "pacer", None)
        waiting = GaugeMetricFamily(f"{NS}_engine_requests_waiting", "requests waiting in the expert's engine "
                                    "(its /metrics, every client's)", labels=["expert", *extra])
        wait = GaugeMetricFamily(f"{NS}_engine_expected_wait_seconds", "expected queueing delay at the expert",
                                 labels=["expert", *extra])
        paced = GaugeMetricFamily(f"{NS}_effective_cost_weight", "cost weight after budget pacing, per key (or profile:<name>)",
                                  labels=["key", "period", *extra])
        for name, row in (capacity.snapshot() if capacity is not None else {}).items():
            waiting.add_metric([name, *pid], row["waiting"])
            wait.add_metric([name, *pid], row["expected_wait_s"])
        for key, row in (pacer.snapshot() if pacer is not None else {}).items():
            paced.add_metric([key, row["period"], *pid], row["effective_cost_weight"])
        yield from (waiting, wait, paced)


class GatewayMetrics:
    """The gateway's Prometheus metrics in a registry of its own (several gateways in one test process)."""

    def __init__(self, gateway: Any = None):
        self.multiproc = multiprocess_dir()
        self.gateway = gateway
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(f"{NS}_requests", "chat requests by profile, answering expert and HTTP status",
                                ["profile", "expert", "status"], registry=r)
        self.decisions = Counter(f"{NS}_routing_decisions", "routing decisions: the policy's first choice",
                                 ["router", "expert", "explored"], registry=r)
        self.attempts = Counter(f"{NS}_attempts", "upstream attempts by expert and outcome "
                                "(ok, connect_error, timeout, http_<status>, ...)", ["expert", "outcome"], registry=r)
        self.retries = Counter(f"{NS}_retries", "attempts beyond the first one of a request", ["profile"],
                               registry=r)
        self.fallbacks = Counter(f"{NS}_fallbacks", "requests not answered by the policy's first choice",
                                 ["from_expert", "to_expert"], registry=r)
        self.latency = Histogram(f"{NS}_request_latency_seconds", "gateway latency until the response (the "
                                 "whole stream for streaming requests)", ["profile", "expert"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram(f"{NS}_ttft_seconds", "time to the expert's first byte / first token",
                              ["expert"], buckets=LATENCY_BUCKETS, registry=r)
        self.overhead = Histogram(f"{NS}_decision_seconds", "routing overhead by stage (embed, route)",
                                  ["stage"], buckets=OVERHEAD_BUCKETS, registry=r)
        self.tokens = Counter(f"{NS}_tokens", "tokens reported by experts", ["expert", "key", "kind"], registry=r)
        self.cost = Counter(f"{NS}_cost_usd", "USD spent, priced from experts.yaml", ["expert", "key"], registry=r)
        self.embed_batch = Histogram(f"{NS}_embed_batch_size", "prompts per embedder batch",
                                     buckets=BATCH_BUCKETS, registry=r)
        self.score_batch = Histogram(f"{NS}_score_batch_size", "prompts per router scoring call (decisions "
                                     "made together share one: routing/score_batcher.py)",
                                     buckets=BATCH_BUCKETS, registry=r)
        # labelled children by (metric, labels): prometheus_client's labels() validates and locks on every
        # call (~3 us); a request updates up to ten of them. Label values are bounded (experts, profiles,
        # statuses, keys), so the cache is too.
        self._children: dict[tuple, Any] = {}
        self.state_collector = StateCollector(gateway, per_process=bool(self.multiproc)) if gateway else None
        if self.state_collector is not None:
            r.register(self.state_collector)

    # -- observer interface (hot path) -----------------------------------------------------
    def on_record(self, record: RequestRecord) -> None:
        profile = record.profile or self._known_model(record.model)
        expert = record.chosen_expert or NONE
        self._child(self.requests, profile, expert, str(record.status)).inc()
        candidates = record.candidates
        first = candidates[0]["expert"] if candidates else None
        if first is not None:
            self._child(self.decisions, record.router or NONE, first, "true" if record.explored else "false").inc()
        attempts = record.attempts
        for attempt in attempts:
            self._child(self.attempts, attempt.expert or NONE, attempt.outcome or NONE).inc()
        if len(attempts) > 1:
            self._child(self.retries, profile).inc(len(attempts) - 1)
        if first is not None and expert != first and attempts:
            self._child(self.fallbacks, first, expert).inc()
        self._timings(record, profile, expert)
        self._usage(record, expert)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _known_model(self, model: str | None) -> str:
        """A request refused before its decision has no profile: label it by the model it asked for when
        that is a configured profile or expert (never by arbitrary client input: label cardinality)."""
        runtime = getattr(self.gateway, "runtime", None)
        if model and runtime is not None and (model in runtime.config.profiles or model in runtime.config.experts):
            return model
        return NONE

    def _timings(self, record: RequestRecord, profile: str, expert: str) -> None:
        if record.latency_ms is not None:
            self._child(self.latency, profile, expert).observe(record.latency_ms / 1e3)
        if record.ttft_ms is not None and record.chosen_expert:
            self._child(self.ttft, expert).observe(record.ttft_ms / 1e3)
        for stage, value in (("embed", record.embed_ms), ("route", record.route_ms)):
            if value is not None:
                self._child(self.overhead, stage).observe(value / 1e3)

    def _usage(self, record: RequestRecord, expert: str) -> None:
        if expert == NONE:
            return
        key = record.key_id or NONE
        for kind, value in (("prompt", record.prompt_tokens), ("completion", record.completion_tokens)):
            if isinstance(value, int) and value > 0:
                self._child(self.tokens, expert, key, kind).inc(value)
        if record.cost_usd:
            self._child(self.cost, expert, key).inc(record.cost_usd)

    def on_embed_batch(self, size: int) -> None:
        self.embed_batch.observe(size)

    def on_score_batch(self, size: int) -> None:
        self.score_batch.observe(size)

    # -- scrape ----------------------------------------------------------------------------
    def render(self) -> bytes:
        """The Prometheus text exposition: this process's registry, or every worker's in multiprocess mode."""
        if not self.multiproc:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiproc)
        if self.state_collector is not None:
            registry.register(self.state_collector)
        return generate_latest(registry)
