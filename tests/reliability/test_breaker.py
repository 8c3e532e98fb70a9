"""Circuit-breaker recovery and stream-only failures, through a real gateway process and fake experts.

Issue 14 found two ways the breaker kept failing requests a healthy expert could have served:
a recovered expert that was not ranked first stayed half-open for good (every ranking, /v1/route
included, used up its probe without calling it), and an expert whose streams failed while its plain
calls succeeded was never taken out of rotation for streams. The breaker opens after 2 failures and
cools down for 1 s; the health loop probes half-open experts on its own.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.configs import ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, served_experts, write_config
from tests.support.polling import wait_for
from tests.support.calls import CAPITAL as MSG
from tests.support.calls import call
from tests.support.servers import set_behaviour, start_fake_expert, start_gateway


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("breaker")
    fakes = {"first": start_fake_expert("ok", "first", 4.0), "recovered": start_fake_expert("ok", "recovered"),
             "streamfail": start_fake_expert("die_midstream", "streamfail"),
             "backup": start_fake_expert("ok", "backup")}
    spec = {"first": {"url": fakes["first"].url, "prior": 0.9, "max_concurrency": 1, "first_byte": 10},
            "recovered": {"url": fakes["recovered"].url, "prior": 0.5},
            "streamfail": {"url": fakes["streamfail"].url, "prior": 0.9},
            "backup": {"url": fakes["backup"].url, "prior": 0.5}}
    profiles = {"burst": "{router: strong, cost_weight: 0, experts: [first, recovered]}",
                "mixed": "{router: strong, cost_weight: 0, experts: [streamfail, backup]}"}
    server = "server: {health_interval_s: 0.5, breaker: {failure_threshold: 2, cooldown_s: 1.0}}"
    config = write_config(tmp / "experts.yaml", served_experts(spec), profiles=profiles,
                          routers=STRONG_AND_CHEAP, embedder=ONE_THREAD_EMBEDDER, extra=server)
    gateway = start_gateway(config, tmp)
    yield gateway, fakes
    gateway.stop()
    for fake in fakes.values():
        fake.stop()


def expert_state(gw, expert: str) -> dict:
    return httpx.get(f"{gw.url}/admin/state").json()["experts"].get(expert, {})


def test_recovered_expert_ranked_second_is_probed_and_serves_a_burst(setup):
    gw, fakes = setup
    set_behaviour(fakes["recovered"], "error")
    for _ in range(2):  # failure_threshold: 2 (direct requests: no fallback)
        assert call(gw.url, "recovered", stream=False)["status"] == 502
    assert expert_state(gw, "recovered")["circuit"] == "open"
    set_behaviour(fakes["recovered"], "slow", delay=0.5)  # healthy again, 0.5 s an answer
    # past the cooldown, traffic keeps going to the expert ranked first and /v1/route is asked
    # about it: neither may use up the recovered expert's probe
    until = time.monotonic() + 2.5
    while time.monotonic() < until:
        assert call(gw.url, "burst", stream=False)["expert"] == "first"
        assert httpx.post(f"{gw.url}/v1/route", json={"model": "burst", "messages": MSG}).status_code == 200
        time.sleep(0.1)
    closed = wait_for(lambda: expert_state(gw, "recovered")["circuit"] == "closed", 3)

    set_behaviour(fakes["first"], "slow", delay=4.0)  # the expert ranked first is now busy
    holder = threading.Thread(target=call, args=(gw.url, "first", False))
    holder.start()
    try:
        assert wait_for(lambda: expert_state(gw, "first").get("inflight") == 1, 5)
        with ThreadPoolExecutor(10) as pool:
            results = list(pool.map(lambda _: call(gw.url, "burst", stream=False), range(10)))
    finally:
        set_behaviour(fakes["first"], "ok")
        set_behaviour(fakes["recovered"], "ok")
        holder.join()
    failed = [r for r in results if r["status"] != 200]
    print(f"\nburst with the first expert busy: {len(failed)}/10 failed; closed by the probe: {closed}")
    assert closed, "the recovered expert was never probed back to closed"
    assert not failed and {r["expert"] for r in results} == {"recovered"}, failed


def test_expert_failing_only_on_streams_leaves_stream_rotation(setup):
    """Streams and plain calls alternate; the expert ranked first answers plain calls and breaks
    every stream after its first chunk (past the point of failover). Its plain successes must not
    keep it in rotation for streams."""
    gw, _ = setup
    results = []
    for i in range(30):
        results.append(call(gw.url, "mixed", stream=bool(i % 2)))
    streams = results[1::2]
    failed = [r for r in streams if not (r["status"] == 200 and r.get("complete"))]
    plain_on_streamfail = sum(r["expert"] == "streamfail" for r in results[0::2])
    print(f"\nmixed traffic: {len(failed)}/{len(streams)} streams failed; "
          f"{plain_on_streamfail}/15 plain calls still served by the stream-failing expert")
    assert len(failed) <= 2, f"{len(failed)} of {len(streams)} streams failed"  # failure_threshold: 2
    assert plain_on_streamfail == 15  # its plain path works: it keeps serving it
    assert expert_state(gw, "streamfail")["circuit"] == "closed"
    assert expert_state(gw, "streamfail")["stream_circuit"] in ("open", "half_open")
