"""End to end: cascade profiles on real vLLM-CPU experts (real token logprobs, real ``n`` samples).

Thresholds are set at the ends of the range so the outcome does not depend on what a 135M model
answers: 0.0 accepts any tier-1 answer, 0.9999 escalates every one (a real answer's mean token
probability is below it). The verifier's own time is measured by eval/bench/cascade_verifier.py.
"""
from __future__ import annotations


import openai
import pytest

from tests.support.configs import ranked_vllm_experts, write_config
from tests.support.request_log import logged_record
from tests.support.servers import start_gateway

pytestmark = pytest.mark.vllm
MSG = [{"role": "user", "content": "What is 2 + 3? Answer with the number only."}]


@pytest.fixture(scope="module")
def cascade_gateway(vllm_experts, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-cascade")
    profiles = {
        "accept-logprob": "{router: strong, cost_weight: 0, cascade: {verifier: logprob, threshold: 0.0, floor: 0}}",
        "escalate-logprob": "{router: strong, cost_weight: 0, cascade: {verifier: logprob, threshold: 0.9999, "
                            "floor: 0}}",
        "accept-consistency": "{router: strong, cost_weight: 0, cascade: {verifier: consistency, threshold: 0.0, "
                              "floor: 0, samples: 3}}"}
    config = write_config(tmp / "experts.yaml", ranked_vllm_experts(vllm_experts),
                          routers={"strong": {"type": "strongest"}}, profiles=profiles)
    server = start_gateway(config, tmp)
    server.db_path = tmp / "requests.db"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(cascade_gateway):
    return openai.OpenAI(base_url=f"{cascade_gateway.url}/v1", api_key="unused", max_retries=0, timeout=300)


def test_logprob_verifier_on_real_logprobs_accepts_and_strips_them(client, cascade_gateway, vllm_experts):
    cheapest = next(iter(vllm_experts))
    raw = client.chat.completions.with_raw_response.create(model="accept-logprob", messages=MSG, max_tokens=12,
                                                           temperature=0)
    reply = raw.parse()
    assert raw.headers["x-router-expert"] == cheapest
    assert reply.choices[0].logprobs is None  # asked upstream for the check only
    tier = logged_record(cascade_gateway.db_path, raw.headers["x-request-id"])["cascade"]["tiers"][0]
    assert tier["outcome"] == "accepted" and 0.0 < tier["confidence"] < 1.0
    assert tier["verifier_ms"] is not None and tier["completion_tokens"] > 0


def test_escalation_is_observed_and_charged(client, cascade_gateway, vllm_experts):
    names = list(vllm_experts)  # prior_quality rises with position: the last is the router's top choice
    cheapest, dearer = names[0], names[-1]
    raw = client.chat.completions.with_raw_response.create(model="escalate-logprob", messages=MSG, max_tokens=12,
                                                           temperature=0)
    reply = raw.parse()
    assert raw.headers["x-router-expert"] == dearer
    record = logged_record(cascade_gateway.db_path, raw.headers["x-request-id"])
    tiers = record["cascade"]["tiers"]
    assert [(t["expert"], t["outcome"]) for t in tiers] == [(cheapest, "escalated"), (dearer, "final")]
    assert all(t["cost_usd"] > 0 for t in tiers)
    assert record["cost_usd"] == pytest.approx(sum(t["cost_usd"] for t in tiers))
    assert reply.usage.completion_tokens == sum(t["completion_tokens"] for t in tiers)
    assert set(record["cascade"]["pair"]) == {cheapest, dearer}


def test_consistency_verifier_on_real_samples(client, cascade_gateway):
    raw = client.chat.completions.with_raw_response.create(model="accept-consistency", messages=MSG,
                                                           max_tokens=12)
    reply = raw.parse()
    assert len(reply.choices) == 1
    tier = logged_record(cascade_gateway.db_path, raw.headers["x-request-id"])["cascade"]["tiers"][0]
    assert min(abs(tier["confidence"] - k / 3) for k in (1, 2, 3)) < 1e-3  # agreement among 3 samples
    assert tier["completion_tokens"] > reply.usage.completion_tokens / 3  # three samples were generated


def test_stream_gets_the_accepted_answer_replayed(client):
    chunks = list(client.chat.completions.create(model="escalate-logprob", messages=MSG, max_tokens=12,
                                                 temperature=0, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
