"""provider: litellm experts, called through litellm's OpenAI provider against a local server."""
from __future__ import annotations

import time

import httpx
import openai
import orjson
import pytest

from tests.support.configs import (AUTO_PROFILES, ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, expert, ranked_experts,
                                   write_config)
from tests.support.servers import start_fake_expert, start_gateway

pytest.importorskip("litellm", reason="litellm is an optional extra (router-gateway[litellm])")

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def litellm_gateway(fake_experts, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("litellm")
    via_litellm = {"viallm": {"provider": "litellm", "litellm_model": "openai/viallm-served"}}
    experts = ranked_experts({"viallm": fake_experts["good"].url}, more=via_litellm,
                             first_byte_s=60)  # litellm's per-call overhead is large on a loaded machine
    config = write_config(tmp / "experts.yaml", experts, routers=STRONG_AND_CHEAP, profiles=AUTO_PROFILES,
                          embedder=ONE_THREAD_EMBEDDER)
    server = start_gateway(config, tmp, env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    yield server
    server.stop()


def test_plain_and_streamed_through_litellm(litellm_gateway):
    client = openai.OpenAI(base_url=f"{litellm_gateway.url}/v1", api_key="x", max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=MSG, temperature=0.2)
    reply = raw.parse()
    assert raw.headers["x-router-expert"] == "viallm"
    assert reply.model == "viallm"
    assert reply.choices[0].message.content == "answer from good"
    assert float(raw.headers["x-router-cost-usd"]) > 0
    chunks = list(client.chat.completions.create(model="auto", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "answer from good"
    assert any(c.usage and c.usage.total_tokens for c in chunks)


def test_a_litellm_stream_that_never_ends_is_cut_at_the_total_timeout(tmp_path):
    endless = start_fake_expert("endless", "endless")
    viallm = expert(f"{endless.url}/v1", "viallm-served", 1, 1, provider="litellm",
                    litellm_model="openai/viallm-served", timeout={"connect": 1, "first_byte": 60, "total": 3})
    config = write_config(tmp_path / "experts.yaml", {"viallm": viallm}, extra="server: {health_interval_s: 0}")
    gateway = start_gateway(config, tmp_path, env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    try:
        body = {"model": "viallm", "messages": MSG, "stream": True}
        started = time.monotonic()
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30) as r:
            events = []
            for line in r.iter_lines():
                events += [line] if line else []
                assert time.monotonic() - started < 20, "still streaming after 20 s"
        assert r.status_code == 200 and events[-1] == "data: [DONE]"
        error = [orjson.loads(e[6:]) for e in events if e.startswith("data: {")][-1]["error"]
        assert error["code"] == "upstream_timeout"
        assert time.monotonic() - started < 3 + 5  # litellm's own overhead on a loaded machine
    finally:
        gateway.stop()
        endless.stop()
