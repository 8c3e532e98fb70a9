"""Reading a vLLM server's own load from its Prometheus ``/metrics`` page.

The gateway's in-flight count sees only its own requests; the engine sees every client's (other
replicas, batch jobs). Three gauges say how loaded it is (requests waiting for a slot, requests
running, KV-cache use) and two counters say how fast it drains its queue (finished requests, and the
sum/count of the time they spent running).

vLLM renames metrics between versions, so each figure lists the names seen so far, newest first:
``vllm:kv_cache_usage_perc`` replaced ``vllm:gpu_cache_usage_perc`` (and the CPU build once reported
``vllm:cpu_cache_usage_perc``); counters appear with or without the ``_total`` suffix depending on the
client library. A page that has none of the names is "no engine metrics": the expert keeps today's
behaviour (only the gateway's own in-flight count).
"""
from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

WAITING = ("vllm:num_requests_waiting",)
RUNNING = ("vllm:num_requests_running",)
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm:cpu_cache_usage_perc")
FINISHED = ("vllm:request_success_total", "vllm:request_success")
# time a request spends running (newer vLLM), else its whole end-to-end latency (older: includes queueing)
SERVICE_TIME = ("vllm:request_inference_time_seconds", "vllm:e2e_request_latency_seconds")


@dataclass(frozen=True)
class EngineSample:
    """One scrape of an engine's metrics page, summed over its label sets (engines, models)."""

    at: float  # wall-clock seconds when it was read (comparable across replicas)
    waiting: float
    running: float
    kv_usage: float | None  # 0..1, None when the server does not report it
    finished: float | None  # cumulative finished requests
    service_sum: float | None  # cumulative seconds finished requests spent being served
    service_count: float | None


class NoEngineMetrics(ValueError):
    """The page parsed but carries none of vLLM's load gauges."""


def parse_engine_metrics(text: str, at: float) -> EngineSample:
    """Parse a Prometheus text page into an EngineSample (prometheus_client's parser, not by hand)."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # a page may list a metric per engine or per model: the server's load is their sum
            samples[sample.name] = samples.get(sample.name, 0.0) + float(sample.value)
    waiting, running = _first(samples, WAITING), _first(samples, RUNNING)
    if waiting is None or running is None:
        raise NoEngineMetrics("no vllm:num_requests_waiting / vllm:num_requests_running on the page")
    return EngineSample(at=at, waiting=waiting, running=running, kv_usage=_first(samples, KV_USAGE),
                        finished=_first(samples, FINISHED),
                        service_sum=_first(samples, tuple(n + "_sum" for n in SERVICE_TIME)),
                        service_count=_first(samples, tuple(n + "_count" for n in SERVICE_TIME)))


def _first(samples: dict[str, float], names: tuple[str, ...]) -> float | None:
    for name in names:
        if name in samples:
            return samples[name]
    return None
