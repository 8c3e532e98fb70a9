"""A client that goes away cancels its request: the expert stops generating, the request is logged as 499,
and the expert's health is not charged for it. Real fake-expert processes behind a real gateway process."""
from __future__ import annotations

import signal
import socket
import sqlite3

import httpx
import orjson
import pytest

from tests.support.configs import ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, served_experts, write_config
from tests.support.polling import wait_for
from tests.support.servers import start_fake_expert, start_gateway

MSG = [{"role": "user", "content": "Tell me a long story."}]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("disconnect")
    slowstream = start_fake_expert("slowstream", "slowstream", 0.4)  # 0.4 s between chunks
    slow = start_fake_expert("slow", "slow", 4.0)  # first byte after 4 s
    spec = {"slowstream": {"url": slowstream.url}, "slow": {"url": slow.url, "first_byte": 10.0}}
    server = ("server: {max_attempts: 1, health_interval_s: 0,\n"
              "         breaker: {failure_threshold: 1, cooldown_s: 60}}")
    config = write_config(tmp / "experts.yaml", served_experts(spec), profiles={"auto": "{router: strong}"},
                          routers=STRONG_AND_CHEAP, embedder=ONE_THREAD_EMBEDDER, extra=server)
    gateway = start_gateway(config, tmp)
    yield {"gateway": gateway, "slowstream": slowstream, "slow": slow, "db": tmp / "requests.db"}
    gateway.stop()
    for fake in (slowstream, slow):
        fake.stop(signal.SIGKILL)


def abandoned(fake) -> int:
    return httpx.get(f"{fake.url}/_stats").json()["abandoned"]


def logged(db, expert: str) -> list[dict]:
    with sqlite3.connect(db) as conn:
        rows = [orjson.loads(r[0]) for r in conn.execute("SELECT data FROM requests ORDER BY ts")]
    return [r for r in rows if r["model"] == expert]


def test_disconnect_mid_stream_stops_the_expert_and_is_logged(setup):
    gateway, fake = setup["gateway"], setup["slowstream"]
    before = abandoned(fake)
    body = {"model": "slowstream", "messages": MSG, "stream": True}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=10) as response:
        assert response.status_code == 200
        first = next(response.iter_bytes())
        assert first.startswith(b"data: ")
    # leaving the block closed the connection after the first chunk, long before the stream's end
    assert wait_for(lambda: abandoned(fake) == before + 1, timeout=5), "the expert kept generating"
    assert wait_for(lambda: any(r["status"] == 499 for r in logged(setup["db"], "slowstream")), timeout=5)
    record = [r for r in logged(setup["db"], "slowstream") if r["status"] == 499][-1]
    assert record["error"] == "client disconnected mid-stream"
    assert record["chosen_expert"] == "slowstream" and record["stream"] is True
    # a client leaving is not the expert's failure: with failure_threshold 1 one charge would open it
    complete = httpx.post(f"{gateway.url}/v1/chat/completions", timeout=10,
                          json={"model": "slowstream", "messages": MSG})
    assert complete.status_code == 200
    assert complete.json()["choices"][0]["message"]["content"].startswith("answer from")


def test_disconnect_while_waiting_cancels_the_upstream_call(setup):
    gateway, fake = setup["gateway"], setup["slow"]
    before = abandoned(fake)
    body = orjson.dumps({"model": "slow", "messages": MSG})
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))
        assert wait_for(lambda: fake_count(fake) > 0, timeout=5)  # the expert got the call
    # the expert answers only after 4 s: noticing the disconnect sooner shows the gateway cancelled it
    assert wait_for(lambda: abandoned(fake) == before + 1, timeout=2.5), "the upstream call was not cancelled"
    assert wait_for(lambda: any(r["status"] == 499 for r in logged(setup["db"], "slow")), timeout=5)
    record = [r for r in logged(setup["db"], "slow") if r["status"] == 499][-1]
    assert record["error"].startswith("cancelled before the answer")


def fake_count(fake) -> int:
    return httpx.get(f"{fake.url}/_stats").json()["count"]


def test_other_methods_get_405_in_openai_shape(setup):
    response = httpx.get(f"{setup['gateway'].url}/v1/chat/completions", timeout=5)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
