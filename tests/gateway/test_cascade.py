"""Cascade profiles through a real gateway process and real fake-expert HTTP servers.

The cheap expert's token logprobs are set per test (``/_behaviour {"logprob": ...}``): confident
answers are accepted at tier 1, unsure ones escalate to tier 2, and both tiers are charged.
"""
from __future__ import annotations

import textwrap

import httpx
import openai
import pytest

from router_gateway.state.request_log import export_records
from tests.support.configs import ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, ranked_experts, write_config
from tests.support.request_log import logged_record
from tests.support.servers import start_fake_expert, start_gateway


@pytest.fixture(scope="module")
def cascade_gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cascade")
    cheap, strong = start_fake_expert("ok", "cheap"), start_fake_expert("ok", "strong")
    broken = start_fake_expert("error", "broken")
    urls = {"cheap": cheap.url, "strong": strong.url, "broken": broken.url}
    config = write_config(tmp / "experts.yaml", ranked_experts(urls), routers=STRONG_AND_CHEAP,
                          embedder=ONE_THREAD_EMBEDDER, profiles=textwrap.dedent("""\
          careful:
            router: strong
            cost_weight: 0.0
            experts: [cheap, strong]
            cascade: {verifier: logprob, threshold: 0.5, floor: 0.0, max_tiers: 2}
          careful-broken:
            router: strong
            cost_weight: 0.0
            experts: [cheap, broken]
            cascade: {verifier: logprob, threshold: 0.5, floor: 0.0, max_tiers: 2}
          careful-consistency:
            router: strong
            cost_weight: 0.0
            experts: [cheap, strong]
            cascade: {verifier: consistency, threshold: 0.8, floor: 0.0, samples: 3}"""))
    gateway = start_gateway(config, tmp)
    gateway.db_path = tmp / "requests.db"
    yield gateway, cheap
    gateway.stop()
    for expert in (cheap, strong, broken):
        expert.stop()


def _set_logprob(expert, value: float) -> None:
    httpx.post(f"{expert.url}/_behaviour", json={"logprob": value}).raise_for_status()


def _client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="none", max_retries=0)


def test_confident_cheap_answer_is_accepted_without_logprobs(cascade_gateway):
    gateway, cheap = cascade_gateway
    _set_logprob(cheap, -0.01)
    raw = _client(gateway).chat.completions.with_raw_response.create(
        model="careful", messages=[{"role": "user", "content": "2+2?"}])
    answer = raw.parse()
    assert raw.headers["x-router-expert"] == "cheap"
    assert raw.headers["x-router-cascade"].startswith("cheap:0.990:accepted")
    assert answer.choices[0].logprobs is None  # requested upstream for the check, not returned
    record = logged_record(gateway.db_path, raw.headers["x-request-id"])
    assert [t["outcome"] for t in record["cascade"]["tiers"]] == ["accepted"]
    assert "pair" not in record["cascade"]


def test_unsure_cheap_answer_escalates_and_both_tiers_are_charged(cascade_gateway):
    gateway, cheap = cascade_gateway
    _set_logprob(cheap, -3.0)
    raw = _client(gateway).chat.completions.with_raw_response.create(
        model="careful", messages=[{"role": "user", "content": "2+2?"}])
    answer = raw.parse()
    assert raw.headers["x-router-expert"] == "strong"
    tiers = raw.headers["x-router-cascade"].split(",")
    assert tiers[0].startswith("cheap:0.050:escalated") and tiers[1] == "strong:-:final"
    assert answer.usage.prompt_tokens == 22 and answer.usage.completion_tokens == 14  # both tiers' tokens
    record = logged_record(gateway.db_path, raw.headers["x-request-id"])
    costs = [t["cost_usd"] for t in record["cascade"]["tiers"]]
    assert all(c > 0 for c in costs)
    assert record["cost_usd"] == pytest.approx(sum(costs))
    assert float(raw.headers["x-router-cost-usd"]) == pytest.approx(sum(costs), rel=1e-6)
    assert record["cascade"]["pair"] == {"cheap": pytest.approx(0.0498, abs=1e-3), "strong": None}
    exported = next(r for r in export_records(gateway.db_path) if r["request_id"] == raw.headers["x-request-id"])
    assert exported["cascade"]["pair"] == record["cascade"]["pair"]  # `logs export` carries the labelled pair
    assert exported["cascade"]["answers"] == {"cheap": "answer from cheap", "strong": "answer from strong"}


def test_stream_replays_the_accepted_answer(cascade_gateway):
    gateway, cheap = cascade_gateway
    _set_logprob(cheap, -3.0)
    stream = _client(gateway).chat.completions.create(
        model="careful", messages=[{"role": "user", "content": "2+2?"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "answer from strong"
    assert chunks[-1].usage.completion_tokens == 14


def test_consistency_verifier_accepts_agreeing_samples_and_returns_one(cascade_gateway):
    gateway, _ = cascade_gateway
    raw = _client(gateway).chat.completions.with_raw_response.create(
        model="careful-consistency", messages=[{"role": "user", "content": "2+2?"}])
    assert raw.headers["x-router-cascade"].startswith("cheap:1.000:accepted")
    assert len(raw.parse().choices) == 1  # three samples upstream, one answer returned


def test_route_shows_the_cascade_plan(cascade_gateway):
    gateway, _ = cascade_gateway
    body = httpx.post(f"{gateway.url}/v1/route",
                      json={"model": "careful", "messages": [{"role": "user", "content": "hi"}]}).json()
    assert body["cascade"] == {"tiers": ["cheap", "strong"], "verifier": "logprob", "threshold": 0.5,
                               "threshold_source": "fixed", "stream_first_tier": False}


def test_failed_escalation_returns_the_paid_for_tier1_answer(cascade_gateway):
    gateway, cheap = cascade_gateway
    _set_logprob(cheap, -3.0)
    raw = _client(gateway).chat.completions.with_raw_response.create(
        model="careful-broken", messages=[{"role": "user", "content": "2+2?"}])
    assert raw.parse().choices[0].message.content == "answer from cheap"
    assert raw.headers["x-router-cascade"] == "cheap:0.050:returned,broken:-:failed"
    record = logged_record(gateway.db_path, raw.headers["x-request-id"])
    assert record["cost_usd"] == pytest.approx(record["cascade"]["tiers"][0]["cost_usd"]) and record["cost_usd"] > 0
