"""Conversations through two gateway replicas on one real Redis, driven by the official openai client
against fake-expert servers: session pins and Responses API ids hold across replicas; the Responses,
completions and embeddings endpoints."""
from __future__ import annotations


import httpx
import openai
import pytest

from tests.support.configs import ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, served_experts, write_config
from tests.support.request_log import logged_record
from tests.support.servers import (
    start_fake_expert,
    start_gateway,
    start_redis,
    wait_gateway,
)

pytestmark = pytest.mark.redis
CHEAP_FIRST = {"x-router-cost-weight": "1000"}  # the policy picks 'cheap'
STRONG_FIRST = {"x-router-cost-weight": "0"}  # the policy picks 'strong'


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conversations")
    redis = start_redis()
    experts = {name: start_fake_expert("ok", name) for name in ("cheap", "strong")}
    spec = {"cheap": {"url": experts["cheap"].url, "prior": 0.5, "price": 0.1},
            "strong": {"url": experts["strong"].url, "prior": 0.9, "price": 1.0}}
    profiles = {"auto": "{router: strong, cost_weight: 0.5}",
                "auto-loose": "{router: strong, cost_weight: 0.5, affinity: {enabled: false}}"}
    gateways = []
    for name in ("a", "b"):
        (tmp / name).mkdir()
        config = write_config(tmp / name / "experts.yaml", served_experts(spec), profiles=profiles,
                              routers=STRONG_AND_CHEAP, embedder=ONE_THREAD_EMBEDDER, server={"health_interval_s": 30})
        gateways.append(start_gateway(config, tmp / name, env={"REDIS_URL": f"redis://127.0.0.1:{redis.port}/0"},
                                      wait=False))
        gateways[-1].db_path = tmp / name / "requests.db"
    for gateway in gateways:
        wait_gateway(gateway)
    yield gateways
    for server in [*gateways, *experts.values(), redis]:
        server.stop()


def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=20)


def turn(gateway, messages, headers, **extra):
    raw = client(gateway).chat.completions.with_raw_response.create(model="auto", messages=messages,
                                                                    extra_headers=headers, **extra)
    return raw.headers, raw.parse()


def test_session_keeps_its_expert_across_replicas(replicas):
    a, b = replicas
    first = [{"role": "user", "content": "Plan two days in Lisbon."}]
    h1, reply = turn(a, first, {"x-session-id": "conv-lisbon", **CHEAP_FIRST})
    assert h1["x-router-expert"] == "cheap" and h1["x-router-affinity"] == "new"
    second = first + [{"role": "assistant", "content": reply.choices[0].message.content},
                      {"role": "user", "content": "Make day 2 cheaper."}]
    h2, _ = turn(b, second, {"x-session-id": "conv-lisbon", **STRONG_FIRST})  # the other replica
    assert h2["x-router-expert"] == "cheap" and h2["x-router-affinity"] == "kept"
    assert h2["x-router-session"] == h1["x-router-session"]
    record = logged_record(b.db_path, h2["x-request-id"])
    assert (record["session"], record["session_source"], record["affinity"]) == \
        (h1["x-router-session"], "header", "kept")
    other, _ = turn(b, second, {"x-session-id": "conv-porto", **STRONG_FIRST})
    assert other["x-router-expert"] == "strong"  # another session: the policy decides


def test_opening_digest_and_prompt_cache_key_sessions(replicas):
    a, b = replicas
    first = [{"role": "system", "content": "You are a chess coach."}, {"role": "user", "content": "Teach me the Sicilian."}]
    h1, _ = turn(a, first, CHEAP_FIRST)
    h2, _ = turn(b, first + [{"role": "assistant", "content": "1.e4 c5"}, {"role": "user", "content": "Why c5?"}],
                 STRONG_FIRST)
    assert (h1["x-router-expert"], h2["x-router-expert"], h2["x-router-affinity"]) == ("cheap", "cheap", "kept")
    h3, _ = turn(a, [{"role": "user", "content": "q1"}], CHEAP_FIRST, prompt_cache_key="pck-7")
    h4, _ = turn(b, [{"role": "user", "content": "an unrelated opening"}], STRONG_FIRST, prompt_cache_key="pck-7")
    assert (h3["x-router-expert"], h4["x-router-expert"]) == ("cheap", "cheap")


def test_profile_without_affinity_routes_each_turn(replicas):
    a, b = replicas
    msgs = [{"role": "user", "content": "hello"}]
    for gateway, headers, expected in ((a, CHEAP_FIRST, "cheap"), (b, STRONG_FIRST, "strong")):
        raw = client(gateway).chat.completions.with_raw_response.create(
            model="auto-loose", messages=msgs, extra_headers={"x-session-id": "s-loose", **headers})
        assert raw.headers["x-router-expert"] == expected and raw.headers["x-router-affinity"] == "off"


def test_responses_plain_streamed_and_previous_response_id_across_replicas(replicas):
    a, b = replicas
    raw = client(a).responses.with_raw_response.create(model="cheap", input="Plan two days in Lisbon.")
    first = raw.parse()
    assert first.output_text == "answer from cheap" and first.model == "cheap"
    record = logged_record(a.db_path, raw.headers["x-request-id"])
    assert record["endpoint"] == "responses" and record["prompt_tokens"] == 11 and record["cost_usd"] > 0
    # the policy would pick 'strong', which does not hold this response (the fake answers 404 there)
    follow = client(b).responses.with_raw_response.create(model="auto", input="Cheaper?",
                                                          previous_response_id=first.id, extra_headers=STRONG_FIRST)
    assert follow.headers["x-router-expert"] == "cheap" and follow.headers["x-router-affinity"] == "pinned"
    assert follow.parse().previous_response_id == first.id
    events = list(client(a).responses.create(model="auto", input="Go on.", stream=True,
                                             previous_response_id=follow.parse().id, extra_headers=STRONG_FIRST))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta").strip() == "answer from cheap"
    assert events[-1].response.model == "cheap"
    again = client(b).responses.create(model="auto", input="More.", previous_response_id=events[0].response.id,
                                       extra_headers=STRONG_FIRST)
    assert again.output_text == "answer from cheap"  # the streamed response's id was pinned too


def test_responses_api_routes_by_policy_and_rejects_bad_input(replicas):
    a, _ = replicas
    raw = client(a).responses.with_raw_response.create(model="auto", input="hello", extra_headers=STRONG_FIRST)
    assert raw.headers["x-router-expert"] == "strong" and raw.headers["x-router-profile"] == "auto"
    with pytest.raises(openai.BadRequestError) as info:
        client(a).responses.create(model="auto", input=42)
    assert info.value.param == "input"


def test_completions_and_embeddings_go_to_named_experts(replicas):
    a, _ = replicas
    raw = client(a).completions.with_raw_response.create(model="strong", prompt="Once upon", max_tokens=5)
    assert raw.headers["x-router-expert"] == "strong" and raw.parse().choices[0].text == " from strong"
    emb = client(a).embeddings.with_raw_response.create(model="cheap", input=["a", "bcd"])
    vectors = emb.parse()
    assert emb.headers["x-router-expert"] == "cheap" and [d.embedding[2] for d in vectors.data] == [1.0, 3.0]
    assert vectors.model == "cheap"
    for call in (lambda c: c.embeddings.create(model="auto", input="x"),
                 lambda c: c.completions.create(model="auto", prompt="x")):
        with pytest.raises(openai.BadRequestError) as info:
            call(client(a))
        assert info.value.param == "model" and info.value.code == "model_not_supported"
    wrong = httpx.get(f"{a.url}/v1/embeddings", timeout=5)
    assert wrong.status_code == 405


def test_route_endpoint_shows_the_sessions_pin_without_calling_an_expert(replicas):
    a, b = replicas
    first = [{"role": "user", "content": "Route me."}]
    h1, _ = turn(a, first, {"x-session-id": "conv-route", **CHEAP_FIRST})
    decision = httpx.post(f"{b.url}/v1/route", json={"model": "auto", "messages": first},
                          headers={"x-session-id": "conv-route", **STRONG_FIRST}, timeout=10).json()
    assert decision["chosen"] == "cheap" and decision["affinity"]["affinity"] == "kept"
    assert decision["affinity"]["session"] == h1["x-router-session"]
