"""The raw ASGI chat endpoint in process: SSE framing by read, errors in OpenAI's shape, the schema."""
from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from router_gateway.app import create_app
from router_gateway.container import GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.forwarding.sse import sse_batches
from router_gateway.pipeline import ChatService
from tests.support.calls import MSG
from tests.support.configs import config_text, fake_experts
from tests.support.fakes import HashEmbedder, fake_connect


async def _collect(chunks: list[bytes]) -> list[list[bytes]]:
    async def source():
        for chunk in chunks:
            yield chunk
    return [batch async for batch in sse_batches(source())]


def test_events_completed_by_one_read_come_out_together():
    batches = asyncio.run(_collect([b"data: a\n\ndata: b\n\ndata: par", b"tial\n\n",
                                    b"data: c\r\n\r\ndata: [DONE]\r\n\r\n", b"data: tail"]))
    assert batches == [[b"data: a\n\n", b"data: b\n\n"], [b"data: partial\n\n"],
                       [b"data: c\n\n", b"data: [DONE]\n\n"], [b"data: tail\n\n"]]


@pytest.fixture
def client(tmp_path):
    text = config_text(fake_experts({"okx": {"model": "okx-served"}}), profiles={"auto": "{router: s}"},
                       routers={"s": {"type": "strongest"}}, log_path=tmp_path / "log.db", flush_interval_ms=20)
    app = create_app(GatewayOptions(config=parse_config(text), connect=fake_connect(),
                                    embedder=HashEmbedder(), health_interval_s=0, watch_config=False,
                                    keys_path=tmp_path / "keys.json"))
    with TestClient(app) as test_client:
        yield test_client


def test_plain_and_streamed_answers(client):
    plain = client.post("/v1/chat/completions", json={"model": "auto", "messages": MSG})
    assert plain.status_code == 200 and plain.headers["x-router-expert"] == "okx"
    assert plain.json()["model"] == "okx"
    assert int(plain.headers["content-length"]) == len(plain.content)
    streamed = client.post("/v1/chat/completions", json={"model": "auto", "messages": MSG, "stream": True})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.headers["x-router-expert"] == "okx"
    assert streamed.text.endswith("data: [DONE]\n\n") and '"model":"okx"' in streamed.text


def test_an_unexpected_error_is_a_500_in_openai_shape(client, monkeypatch):
    async def broken(self, chat, ctx):
        raise RuntimeError("a bug")
    monkeypatch.setattr(ChatService, "handle", broken)
    response = client.post("/v1/chat/completions", json={"model": "auto", "messages": MSG})
    assert response.status_code == 500
    assert response.json()["error"] == {"message": "internal error in the gateway", "type": "server_error",
                                        "param": None, "code": None}


def test_bad_input_is_refused_before_routing(client):
    assert client.post("/v1/chat/completions", content=b"{not json").json()["error"]["type"] == \
        "invalid_request_error"
    response = client.post("/v1/chat/completions", json={"model": "nope", "messages": MSG})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


def test_the_endpoint_is_in_the_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/v1/chat/completions"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["required"] == ["model", "messages"]
    assert "/v1/route" in schema["paths"]


def test_a_stream_whose_headers_cannot_be_sent_still_runs_its_cleanup():
    """The client is gone before the response starts: the stream's generator must still run its finally
    (in the gateway: the log record, the runtime release, closing the upstream connection)."""
    from router_gateway.api.chat import _send_stream
    from router_gateway.pipeline import ChatOutcome

    cleaned = []

    async def stream():
        try:
            yield b"data: first\n\n"
            yield b"data: [DONE]\n\n"
        finally:
            cleaned.append(True)

    async def send(message):
        raise OSError("client gone")

    with pytest.raises(OSError):
        asyncio.run(_send_stream(send, ChatOutcome({}, stream=stream()), {"finished": False}))
    assert cleaned == [True]
