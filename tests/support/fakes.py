"""In-process fakes for unit tests: a hashing embedder and a fake expert server whose behaviour is
chosen by the expert's served model name (ok, slow, error, reject, stream, ...). The server is a
handler behind the gateway's in-memory connection (router_gateway/http/memory.py): the gateway's
real HTTP client parses its answers."""
from __future__ import annotations

import asyncio
import hashlib

import httpx
import numpy as np
import orjson

from router_gateway.embedding.base import EmbedderInfo, normalise
from router_gateway.http.memory import InMemoryConnector


class HashEmbedder:
    """Deterministic pseudo-embeddings: same text, same vector. Claims MiniLM's name and size so
    artifacts trained with it pass the gateway's embedder check in unit tests."""

    def __init__(self, dim: int = 384, name: str = "all-MiniLM-L6-v2"):
        self.info = EmbedderInfo(name=name, dim=dim, backend="hash")
        self.calls: list[int] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal(self.info.dim))
        return normalise(np.asarray(rows))


def fake_connect(calls: list | None = None) -> InMemoryConnector:
    """A connection factory (``GatewayOptions.connect``) whose server is ``fake_handler(calls)``."""
    return InMemoryConnector(fake_handler(calls))


def fake_handler(calls: list | None = None):
    """Behaviour by the served model name's prefix: ok*, slow*, error*, ratelimit*, stream responses
    for stream requests, 'down*' raises a connection error."""

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"data": []})
        body = orjson.loads(request.content)
        model = body["model"]
        if calls is not None:
            calls.append(body)
        if model.startswith("down"):
            raise httpx.ConnectError("connection refused", request=request)
        if model.startswith("error"):
            return httpx.Response(500, json={"error": {"message": "boom"}})
        if model.startswith("reject"):
            return httpx.Response(400, json={"error": {"message": "bad temperature", "type": "BadRequestError",
                                                       "param": "temperature", "code": 400}})
        if model.startswith("ratelimit"):
            return httpx.Response(429, json={"error": {"message": "slow down"}})
        if model.startswith("slow"):
            await asyncio.sleep(5)
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if request.url.path.endswith(("/responses", "/embeddings", "/completions")) \
                and not request.url.path.endswith("/chat/completions"):
            return other_api(request.url.path.rsplit("/", 1)[1], body, model)
        if body.get("stream"):
            chunks = [{"model": model, "choices": [{"index": 0, "delta": {"content": w}}]} for w in ("a", "b")]
            chunks.append({"model": model, "choices": [], "usage": usage})
            data = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
            return httpx.Response(200, stream=httpx.ByteStream(data), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json={"id": "x", "object": "chat.completion", "model": model,
                                         "choices": [{"index": 0, "message": {"role": "assistant",
                                                                              "content": "hi"}}],
                                         "usage": usage})

    return handler


def other_api(api: str, body: dict, model: str) -> httpx.Response:
    """Minimal answers of the Responses, embeddings and completions APIs (ids count up per call)."""
    other_api.count = getattr(other_api, "count", 0) + 1
    if api == "embeddings":
        return httpx.Response(200, json={"object": "list", "model": model, "data": [
            {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "usage": {"prompt_tokens": 3, "total_tokens": 3}})
    if api == "completions":
        return httpx.Response(200, json={"id": "cmpl-1", "object": "text_completion", "model": model,
                                         "choices": [{"index": 0, "text": " done", "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}})
    rid = f"resp_{model}_{other_api.count}"
    response = {"id": rid, "object": "response", "model": model, "status": "completed",
                "output": [{"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": "hi"}]}],
                "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}}
    if not body.get("stream"):
        return httpx.Response(200, json=response)
    events = [("response.created", {"type": "response.created", "response": {**response, "status": "in_progress",
                                                                              "usage": None}}),
              ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "hi"}),
              ("response.completed", {"type": "response.completed", "response": response})]
    data = b"".join(b"event: " + name.encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for name, e in events)
    return httpx.Response(200, stream=httpx.ByteStream(data), headers={"content-type": "text/event-stream"})
