"""The gateway as a real server in front of real fake-expert servers, driven by the openai client."""
from __future__ import annotations

import sqlite3

import httpx
import openai
import orjson
import pytest

from tests.support.polling import wait_for
from tests.support.request_log import logged_ids


MSG = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=20)


def test_routed_chat_headers_and_model_name(client):
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=MSG)
    reply = raw.parse()
    assert raw.headers["x-router-expert"] == "good2"  # strongest prior among the allowed
    assert raw.headers["x-router-profile"] == "auto"
    assert raw.headers["x-request-id"].startswith("req-")
    assert float(raw.headers["x-router-cost-usd"]) > 0
    assert reply.model == "good2"  # names the expert, not the served model
    assert reply.usage.total_tokens == 18


def test_cheap_profile_picks_cheapest(client):
    raw = client.chat.completions.with_raw_response.create(model="auto-cheap", messages=MSG)
    assert raw.headers["x-router-expert"] == "good"


def test_every_openai_field_is_forwarded_and_model_replaced(client):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    reply = client.chat.completions.create(
        model="auto", messages=MSG, tools=tools, tool_choice="auto", temperature=0.3, n=1, stop=["\n"],
        seed=7, logprobs=True, response_format={"type": "json_object"}, extra_body={"future_field": {"x": 1}})
    echo = reply.model_extra["x_echo"]
    assert echo["model"] == "good2-served"
    for key, value in [("tools", tools), ("tool_choice", "auto"), ("temperature", 0.3), ("stop", ["\n"]),
                       ("seed", 7), ("logprobs", True), ("future_field", {"x": 1}),
                       ("response_format", {"type": "json_object"})]:
        assert echo[key] == value, key
    assert reply.choices[0].message.tool_calls[0].function.name == "lookup"


def test_streaming_relays_chunks_and_hides_unrequested_usage(client):
    chunks = list(client.chat.completions.create(model="auto", messages=MSG, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "answer from good2"
    assert all(c.usage is None for c in chunks)
    assert {c.model for c in chunks} == {"good2"}


def test_streaming_with_usage_requested(client):
    chunks = list(client.chat.completions.create(model="auto", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].usage.total_tokens == 18


def test_direct_expert_name(client):
    raw = client.chat.completions.with_raw_response.create(model="good", messages=MSG)
    assert raw.headers["x-router-expert"] == "good"
    assert raw.headers["x-router-profile"] == ""


def test_models_lists_profiles_and_experts(client):
    ids = {m.id for m in client.models.list()}
    assert {"auto", "auto-cheap", "good", "good2", "broken"} <= ids


def test_error_classes(client, gateway):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-nope", messages=MSG)
    assert info.value.body["param"] == "model" if isinstance(info.value.body, dict) else True
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="auto", messages=[])
    with pytest.raises(openai.BadRequestError):  # profile limit: max_messages 4
        client.chat.completions.create(model="auto-cheap", messages=MSG * 5)
    with pytest.raises(openai.BadRequestError):  # profile limit: max_tokens 100
        client.chat.completions.create(model="auto-cheap", messages=MSG, max_tokens=1000)
    with pytest.raises(openai.APIStatusError) as big:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x" * 70000}])
    assert big.value.status_code == 413
    with pytest.raises(openai.InternalServerError) as upstream:
        client.chat.completions.create(model="only-broken", messages=MSG)
    assert upstream.value.status_code == 502
    with pytest.raises(openai.InternalServerError) as timeout:
        client.chat.completions.create(model="only-hanging", messages=MSG)
    assert timeout.value.status_code == 504
    response = httpx.post(f"{gateway.url}/v1/chat/completions", content=b"{not json", timeout=10)
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


def test_prompt_beyond_every_context_window_is_400_context_length_exceeded(client):
    long = [{"role": "user", "content": "word " * 4000}]  # ~5,000 tokens: beyond the 4,096-token windows
    with pytest.raises(openai.BadRequestError) as info:  # static: the client must shorten it, not retry
        client.with_options(max_retries=0).chat.completions.create(model="auto", messages=long)
    assert info.value.status_code == 400
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages"
    assert "context window" in str(info.value)


def test_fallback_before_first_byte(client):
    raw = client.chat.completions.with_raw_response.create(model="broken-then-good", messages=MSG)
    assert raw.headers["x-router-expert"] == "good2"
    # 2 attempts while broken's circuit is closed; 1 once earlier failures have opened it
    assert raw.headers["x-router-attempts"] in ("1", "2")
    chunks = list(client.chat.completions.create(model="broken-then-good", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == "answer from good2"


def test_route_endpoint_explains_without_calling(gateway):
    response = httpx.post(f"{gateway.url}/v1/route", json={"model": "auto-cheap", "messages": MSG}, timeout=10)
    decision = response.json()
    assert response.status_code == 200
    assert decision["chosen"] == "good"
    assert [c["expert"] for c in decision["candidates"]] == ["good", "good2"]
    assert decision["ineligible"]["broken"] == "not in the profile's expert list"
    plain = httpx.post(f"{gateway.url}/v1/route", json={"model": "auto", "messages": MSG}, timeout=10).json()
    assert plain["chosen"] == "good2"  # strongest, cost ignored (cost_weight 0)
    override = httpx.post(f"{gateway.url}/v1/route", json={"model": "auto", "messages": MSG},
                          headers={"x-router-cost-weight": "5"}, timeout=10).json()
    assert override["cost_weight"] == 5.0 and override["chosen"] == "good"  # now price dominates
    bad = httpx.post(f"{gateway.url}/v1/route", json={"model": "auto", "messages": MSG},
                     headers={"x-router-cost-weight": "-3"}, timeout=10)
    assert bad.status_code == 400


def test_feedback_round_trip_and_unknown_id(client, gateway):
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=MSG)
    rid = raw.headers["x-request-id"]
    ok = httpx.post(f"{gateway.url}/v1/feedback", json={"request_id": rid, "score": 0.9, "comment": "good"})
    assert ok.status_code == 200
    missing = httpx.post(f"{gateway.url}/v1/feedback", json={"request_id": "req-nope", "score": 0.5})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "request_id"
    bad = httpx.post(f"{gateway.url}/v1/feedback", json={"request_id": rid, "score": 3})
    assert bad.status_code == 400
    def feedback_row():
        with sqlite3.connect(gateway.db_path) as db:
            return db.execute("SELECT score FROM feedback WHERE request_id = ?", (rid,)).fetchone()
    assert wait_for(feedback_row, 5) == (0.9,)


def test_health_ready_and_unknown_route(gateway):
    assert httpx.get(f"{gateway.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/ready").json()
    assert ready["config"] and ready["embedder"] and "good" in ready["experts_reachable"]
    missing = httpx.get(f"{gateway.url}/v2/nothing")
    assert missing.status_code == 404 and "error" in missing.json()


def test_log_holds_exactly_one_record_per_request(client, gateway):
    before = logged_ids(gateway.db_path)
    sent = []
    for model, stream in [("auto", False), ("auto", True), ("good", False), ("gpt-nope", False),
                          ("only-broken", False)]:
        try:
            raw = client.chat.completions.with_raw_response.create(model=model, messages=MSG, stream=stream)
            sent.append(raw.headers["x-request-id"])
            if stream:
                list(raw.parse())
        except openai.APIStatusError:
            sent.append(None)
    wait_for(lambda: len(logged_ids(gateway.db_path) - before) >= len(sent), 5)  # the log flushes every 50 ms
    new = logged_ids(gateway.db_path) - before
    assert len(new) == len(sent)
    assert {s for s in sent if s} <= new
    records = [orjson.loads(d) for (d,) in sqlite3.connect(gateway.db_path).execute(
        "SELECT data FROM requests WHERE request_id IN (%s)" % ",".join("?" * len(new)), list(new))]
    statuses = {r["status"] for r in records}
    assert {200, 404} <= statuses and statuses & {502, 503}  # 503 once the breaker has opened
    ok = [r for r in records if r["status"] == 200 and r["profile"] == "auto"]
    assert all(r["candidates"] and r["chosen_expert"] == "good2" and r["propensity"] == 1.0 for r in ok)
    assert all(r["cost_usd"] and r["prompt_tokens"] == 11 for r in ok)
