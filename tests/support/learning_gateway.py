"""An in-process gateway for the learning service's tests: fake experts and a fake judge behind the real
forwarder (in-memory connection), an embedder with two topics, the learning: config, and helpers to
serve traffic and wait for the shadow queue."""
from __future__ import annotations

import asyncio
import re

import httpx
import numpy as np
import orjson

from router_gateway.container import Gateway
from router_gateway.domain.protocol import parse_chat_request
from router_gateway.embedding.base import EmbedderInfo
from router_gateway.http.memory import InMemoryConnector
from router_gateway.pipeline import CallContext, ChatService
from tests.support.configs import config_text, fake_experts


class TopicEmbedder:
    """Prompts about maths and about poems land in two clusters (plus a little per-prompt noise)."""

    def __init__(self):
        self.info = EmbedderInfo(name="all-MiniLM-L6-v2", dim=384, backend="topic")

    def embed(self, texts):
        out = []
        for text in texts:
            rng = np.random.default_rng(abs(hash(text)) % 2**32)
            v = rng.standard_normal(384) * 0.05
            v[0 if text.startswith("math") else 1] += 1.0
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


def judge_connect(calls: list) -> InMemoryConnector:
    """cheap is right on maths only, dear on everything; the judge grades by that rule."""

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"data": []})
        body = orjson.loads(request.content)
        model, text = body["model"], body["messages"][-1]["content"]
        calls.append(model)
        if model == "judge":
            question = re.search(r"\[Question\]\n(.*?)\n\n\[Answer\]", text, re.S).group(1)
            answer = re.search(r"\[Answer\]\n(.*?)\n\n", text, re.S).group(1)
            good = answer == "from dear" or question.startswith("math")
            content = "10" if good else "0"
        else:
            content = f"from {model}"
        return httpx.Response(200, json={"id": "x", "object": "chat.completion", "model": model,
                                         "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                                         "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}})

    return InMemoryConnector(handler)


def learning_config(tmp_path, share: float = 10.0, min_labels: int = 16, judge: dict | None = None,
                    promote: dict | None = None) -> str:
    experts = fake_experts({"cheap": {"price": 1, "q": 0.3}, "dear": {"price": 10, "q": 0.95},
                            "judge": {"price": 1, "q": 0.1}})
    learning = {
        "profile": "auto",
        "shadow": {"sample": 1.0, "experts": ["cheap", "dear"], "policy": "random", "max_share": share,
                   "usd_per_day": 1.0},
        "grader": {"kinds": ["judge"], "judge": {"expert": "judge", **(judge or {})}},
        "retrain": {"router": "knn", "params": {"k": 5}, "every_labels": 8, "min_labels": min_labels, "folds": 3},
        # null_z 1: this checks the service's mechanics on a few dozen prompts; the gate's power and
        # safety at its shipped setting are checked in test_loop.py
        "promote": {"artifacts": str(tmp_path / "learning"), "gate": {"min_rows": 4, "z": 1.0, "null_z": 1.0},
                    **(promote or {})}}
    return config_text(experts, routers={"strong": {"type": "strongest"}},
                       profiles={"auto": {"router": "strong", "cost_weight": 0.5, "experts": ["cheap", "dear"]}},
                       log_path=tmp_path / "log.db", flush_interval_ms=20, learning=learning)


async def serve(gateway: Gateway, n: int, start: int = 0) -> list[str]:
    chat = ChatService(gateway)
    experts = []
    for i in range(start, start + n):
        body = {"model": "auto", "messages": [{"role": "user", "content": ("math " if i % 2 else "poem ") + str(i)}]}
        out = await chat.handle(parse_chat_request(body), CallContext(f"req-{i}", body, 80))
        experts.append(out.headers["x-router-expert"])
    return experts


async def drain(gateway: Gateway) -> None:
    """Until the shadow queue is empty and the jobs the workers already took have finished too (an
    empty queue alone may leave the last job's label unwritten)."""
    queue = gateway.learning.queue
    for _ in range(400):
        if queue.empty() and not any(gateway.learning._swaps):
            await asyncio.wait_for(queue.join(), 60)
            await asyncio.sleep(0.05)
            if queue.empty():
                return
        await asyncio.sleep(0.02)
