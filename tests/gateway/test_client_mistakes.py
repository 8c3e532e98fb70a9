"""Client mistakes are 400s, not 500s, and every unexpected 500 still writes its request record.

In process (fake expert behind the in-memory connection, hashing embedder): ``stream_options`` that is not an object, JSON nested
deeper than the gateway re-encodes (orjson decodes 1,024 levels, encodes 254), on every endpoint that
takes a JSON body; and bugs injected before routing, while forwarding and mid-stream."""
from __future__ import annotations

import sqlite3

import orjson
import pytest
from fastapi.testclient import TestClient

from router_gateway.api import openai_endpoints
from router_gateway.api.json_depth import MAX_JSON_DEPTH, json_too_deep
from router_gateway.app import create_app
from router_gateway.container import GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.forwarding import forwarder as forwarding
from router_gateway.forwarding.forwarder import Forwarder
from tests.support.calls import MSG
from tests.support.configs import config_text, fake_experts
from tests.support.fakes import HashEmbedder, fake_connect


@pytest.fixture
def client(tmp_path):
    text = config_text(fake_experts({"okx": {"model": "okx-served"}}), profiles={"auto": "{router: s}"},
                       routers={"s": {"type": "strongest"}}, log_path=tmp_path / "log.db", flush_interval_ms=20)
    app = create_app(GatewayOptions(config=parse_config(text), connect=fake_connect(),
                                    embedder=HashEmbedder(), health_interval_s=0, watch_config=False,
                                    keys_path=tmp_path / "keys.json"))
    test_client = TestClient(app)
    test_client.__enter__()
    test_client.db = tmp_path / "log.db"
    running = [True]

    def stop() -> None:  # stopping the gateway flushes its request log
        if running.pop(0) if running else False:
            test_client.__exit__(None, None, None)
    test_client.stop = stop
    yield test_client
    stop()


def records(db) -> list[dict]:
    with sqlite3.connect(db) as conn:
        return [orjson.loads(r[0]) for r in conn.execute("SELECT data FROM requests ORDER BY ts")]


def nested(depth: int):
    value = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def nested_raw(depth: int) -> bytes:
    """JSON nested ``depth`` deep as bytes: no encoder writes past 254 levels, a hostile client does."""
    opening = b"".join(b"[" if i % 2 else b'{"k":' for i in reversed(range(depth)))
    closing = b"".join(b"]" if i % 2 else b"}" for i in range(depth))
    return opening + b'"leaf"' + closing


def post_raw(client, path: str, head: bytes, deep: bytes, tail: bytes = b"}"):
    return client.post(path, content=head + deep + tail, headers={"content-type": "application/json"})


def assert_400(response, fragment: str = "") -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert fragment in error["message"]


@pytest.mark.parametrize("options", ["yes", 1, True, [1, 2], [["include_usage", True]], {"include_usage": "yes"}])
@pytest.mark.parametrize("stream", [True, False])
def test_stream_options_that_is_not_an_object_is_a_400(client, options, stream):
    body = {"model": "auto", "messages": MSG, "stream": stream, "stream_options": options}
    assert_400(client.post("/v1/chat/completions", json=body), "stream_options")
    assert_400(client.post("/v1/route", json=body), "stream_options")


def test_stream_options_as_an_object_or_null_still_works(client):
    for options in (None, {}, {"include_usage": True}, {"include_usage": False, "future_option": 1}):
        body = {"model": "auto", "messages": MSG, "stream": True, "stream_options": options}
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n"), response.text
        assert ('"usage"' in response.text) == bool(options and options.get("include_usage"))


@pytest.mark.parametrize("depth", [255, 300, 1000])
def test_json_nested_past_what_the_gateway_reencodes_is_a_400_on_every_json_endpoint(client, depth):
    deep = nested_raw(depth)
    assert orjson.loads(deep)  # the parser takes it: only re-encoding would fail
    chat = b'{"model": "auto", "messages": ' + orjson.dumps(MSG) + b', "metadata": '
    assert_400(post_raw(client, "/v1/chat/completions", chat, deep), "nests deeper")
    assert_400(post_raw(client, "/v1/chat/completions", chat.replace(b"{", b'{"stream": true, ', 1), deep),
               "nests deeper")
    assert_400(post_raw(client, "/v1/route", chat, deep), "nests deeper")
    answer = client.post("/v1/chat/completions", json={"model": "auto", "messages": MSG})
    feedback = b'{"request_id": "%s", "score": 1, "extra": ' % answer.headers["x-request-id"].encode()
    assert_400(post_raw(client, "/v1/feedback", feedback, deep), "nests deeper")


def test_nesting_within_the_limit_is_served_and_logged(client):
    deep = nested(MAX_JSON_DEPTH - 2)  # inside the body object and its "metadata" key: the limit exactly
    response = client.post("/v1/chat/completions", json={"model": "auto", "messages": MSG, "metadata": deep})
    assert response.status_code == 200, response.text
    feedback = {"request_id": response.headers["x-request-id"], "score": 0.5, "extra": deep}
    assert client.post("/v1/feedback", json=feedback).status_code == 200


def test_depth_check():
    for depth in (1, 5, MAX_JSON_DEPTH):
        value = nested(depth)
        assert not json_too_deep(orjson.dumps(value), value)
    value = nested(MAX_JSON_DEPTH + 1)
    assert json_too_deep(orjson.dumps(value), value)
    wide = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}] * 5000}
    assert not json_too_deep(orjson.dumps(wide), wide)  # many brackets, shallow: walked, and fine


def test_a_bug_while_forwarding_is_a_500_with_its_record(client, monkeypatch):
    async def broken(self, *args, **kwargs):
        raise RuntimeError("a bug in forwarding")
    monkeypatch.setattr(Forwarder, "forward", broken)
    response = client.post("/v1/chat/completions", json={"model": "auto", "messages": MSG})
    assert response.status_code == 500 and "Traceback" not in response.text
    client.stop()
    [record] = [r for r in records(client.db) if r["status"] == 500]
    assert record["error"].startswith("internal error in the gateway: RuntimeError: a bug in forwarding")
    assert record["model"] == "auto" and record["profile"] == "auto"


def test_a_bug_in_the_stream_relay_is_logged_as_the_500_it_was(client, monkeypatch):
    def broken(event):
        raise RuntimeError("a bug in the relay")
    monkeypatch.setattr(forwarding, "usage_of", broken)
    response = client.post("/v1/chat/completions", json={"model": "auto", "messages": MSG, "stream": True})
    # the fake expert's events come in one read, relayed before the headers: the answer is a plain 500
    assert response.status_code == 500 and "internal error in the gateway" in response.text
    client.stop()
    [record] = [r for r in records(client.db) if r["stream"]]
    assert record["status"] == 500 and "RuntimeError: a bug in the relay" in record["error"]


def test_a_bug_before_routing_is_a_500_with_its_record(client, monkeypatch):
    def broken(body):
        raise RuntimeError("a bug in parsing")
    monkeypatch.setattr(openai_endpoints, "parse_chat_request", broken)
    response = client.post("/v1/chat/completions", json={"model": "auto", "messages": MSG})
    assert response.status_code == 500
    client.stop()
    [record] = records(client.db)
    assert record["status"] == 500 and "RuntimeError: a bug in parsing" in record["error"]
