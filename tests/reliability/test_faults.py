"""Fault injection against real fake-expert processes through a real gateway process.

Each fault sits in front of a healthy expert (profile ``via-<fault>``: the faulty expert ranked first)
and alone (``only-<fault>``). While a healthy expert is eligible no request whose first byte was not
yet sent may fail; alone, the fault must surface as the right OpenAI-shaped error. The breaker opens
after 2 failures and probes after 1 s (``server.breaker``). The measured matrix is printed at the end.
"""
from __future__ import annotations

import json
import os
import time

import httpx
import pytest

from tests.support.calls import CAPITAL as MSG
from tests.support.calls import call
from tests.support.configs import ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, served_experts, write_config
from tests.support.polling import wait_for
from tests.support.servers import set_behaviour, start_gateway

FAULTS = ["refuse", "e500", "ratelimited", "hang", "slowfb", "slowok", "dies", "flap"]
MATRIX: dict[str, dict] = {}


@pytest.fixture(scope="module")
def gw(experts, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    spec = {name: {"url": s.url, "prior": 0.9} for name, s in experts.items()}
    spec["good"]["prior"], spec["good2"]["prior"] = 0.5, 0.4
    profiles = {"healthy": "{router: strong, cost_weight: 0, experts: [good, good2]}",
                "via-switch": "{router: strong, cost_weight: 0, experts: [switch, good]}"}
    for fault in FAULTS:
        profiles[f"via-{fault}"] = f"{{router: strong, cost_weight: 0, experts: [{fault}, good]}}"
        profiles[f"only-{fault}"] = f"{{router: strong, cost_weight: 0, experts: [{fault}]}}"
    server_settings = ("server: {max_attempts: 3, max_body_bytes: 65536, health_interval_s: 0.5,\n"
                       "         breaker: {failure_threshold: 2, cooldown_s: 1.0}}")
    config = write_config(tmp / "experts.yaml", served_experts(spec), profiles=profiles,
                          routers=STRONG_AND_CHEAP, embedder=ONE_THREAD_EMBEDDER, extra=server_settings)
    server = start_gateway(config, tmp)
    server.config_path, server.tmp = config, tmp
    yield server
    server.stop()
    out = os.environ.get("RG_FAULT_MATRIX")
    if out:
        with open(out, "w") as f:
            json.dump(MATRIX, f, indent=2)
    print("\nfault matrix:\n" + "\n".join(f"  {k}: {v}" for k, v in MATRIX.items()))


def outcome(r: dict) -> str:
    if r["status"] == 200 and r.get("complete"):
        return f"200 ok ({r['expert']})"
    if r["status"] == 200:
        return f"200 then SSE error {r['error']['code']}"
    return f"{r['status']} {r['error']['code']}" + (" +Retry-After" if r.get("retry_after") else "")


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_with_a_healthy_expert_behind_it(gw, fault):
    results = [call(gw.url, f"via-{fault}", stream=bool(i % 2)) for i in range(8)]
    MATRIX[f"{fault} + healthy fallback"] = sorted({outcome(r) for r in results})
    for r in results:
        if fault == "dies" and r["status"] == 200 and not r.get("complete"):
            # the stream had started: the only honest answer is a final SSE error event
            assert r["error"]["type"] == "upstream_error"
            continue
        assert r["status"] == 200 and r["complete"], (fault, r)
        if fault not in ("flap", "slowok", "dies"):
            assert r["expert"] == "good", (fault, r)


ALONE = {"refuse": {502, 503}, "e500": {502, 503}, "ratelimited": {502, 503}, "hang": {504, 503},
         "slowfb": {504, 503}, "slowok": {200}, "dies": {200, 503}, "flap": {200, 502, 503}}


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_alone_gives_the_right_error(gw, fault):
    results = [call(gw.url, f"only-{fault}", stream=bool(i % 2)) for i in range(4)]
    MATRIX[f"{fault} alone"] = sorted({outcome(r) for r in results})
    for r in results:
        assert r["status"] in ALONE[fault], (fault, r)
        if r["status"] == 503:
            assert r["error"]["code"] == "no_expert_available" and r["retry_after"]
        elif r["status"] == 502:
            assert r["error"]["type"] == "upstream_error"
        elif r["status"] == 504:
            assert r["error"]["type"] == "timeout_error"


def state_of(gw, expert: str) -> str:
    return httpx.get(f"{gw.url}/admin/state").json()["experts"].get(expert, {}).get("circuit", "closed")


def test_circuit_opens_and_recovers_as_configured(gw, experts):
    switch = experts["switch"]
    set_behaviour(switch, "error")
    try:
        for _ in range(2):  # failure_threshold: 2
            second_started = time.monotonic()  # the breaker opens after this; its cooldown ends >= 1 s later
            r = call(gw.url, "via-switch", stream=False)
            assert r["status"] == 200 and r["expert"] == "good"
        # open, or half-open with its probes failing: switch still answers 500 (never closed here)
        assert state_of(gw, "switch") in ("open", "half_open")
        route = httpx.post(f"{gw.url}/v1/route", json={"model": "via-switch", "messages": MSG}).json()
        assert route["chosen"] == "good" and route["ineligible"]["switch"].startswith("circuit")
        set_behaviour(switch, "ok")
        r = call(gw.url, "via-switch", stream=False)
        if time.monotonic() - second_started < 1.0:  # all within the cooldown (not so on a loaded machine)
            assert r["expert"] == "good"  # still cooling down, though healthy again
        # cooldown_s: 1.0, then the gateway's own probe (no client request) closes it
        assert wait_for(lambda: state_of(gw, "switch") == "closed", 5)
        after = call(gw.url, "via-switch", stream=True)
        assert after["status"] == 200 and after["expert"] == "switch" and after["complete"]
        MATRIX["circuit"] = "opened after 2 failures, half-open after 1 s, closed by the gateway's probe"
    finally:
        set_behaviour(switch, "ok")


def test_health_check_marks_unhealthy_expert_ineligible(gw, experts):
    switch = experts["switch"]
    set_behaviour(switch, "unhealthy")  # answers chats, fails /v1/models
    try:
        route = lambda: httpx.post(f"{gw.url}/v1/route", json={"model": "via-switch", "messages": MSG}).json()  # noqa: E731
        assert wait_for(lambda: "health check failing" in route()["ineligible"].get("switch", ""), 5)
        set_behaviour(switch, "ok")
        assert wait_for(lambda: route()["chosen"] == "switch", 5)
    finally:
        set_behaviour(switch, "ok")


HOSTILE = {
    "unknown key": "experts: {a: {base_url: http://x/v1, model: m, price: {input_per_mtok: 1, output_per_mtok: 1}, colour: red}}\n",
    "wrong type": "experts: {a: {base_url: http://x/v1, model: m, price: {input_per_mtok: lots, output_per_mtok: 1}}}\n",
    "unset env var": "experts: {a: {base_url: '${RG_SURELY_UNSET_VAR}', model: m, price: {input_per_mtok: 1, output_per_mtok: 1}}}\n",
    "duplicate names": "experts:\n  a: {base_url: http://x/v1, model: m, price: {input_per_mtok: 1, output_per_mtok: 1}}\n"
                       "  a: {base_url: http://y/v1, model: m, price: {input_per_mtok: 1, output_per_mtok: 1}}\n",
    "yaml bomb": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                 "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nexperts: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
    "not yaml": "experts: {a: [unclosed\n",
    "binary": "\x00\x01\x02 garbage",
    "empty": "",
}


def test_hostile_config_on_reload_keeps_running_config(gw):
    good = gw.config_path.read_text()
    version = httpx.get(f"{gw.url}/ready").json()["config_version"]
    try:
        for name, text in HOSTILE.items():
            gw.config_path.write_text(text)
            refused = httpx.post(f"{gw.url}/admin/reload", timeout=10)
            assert refused.status_code == 400, (name, refused.text)
            message = refused.json()["error"]["message"]
            assert "reload refused" in message and "Traceback" not in message, (name, message)
            r = call(gw.url, "healthy", stream=False)
            assert r["status"] == 200 and r["complete"], name
    finally:
        gw.config_path.write_text(good)
    assert httpx.post(f"{gw.url}/admin/reload", timeout=10).status_code == 200
    assert httpx.get(f"{gw.url}/ready").json()["config_version"] > version
    assert "Traceback" not in gw.log_text()
