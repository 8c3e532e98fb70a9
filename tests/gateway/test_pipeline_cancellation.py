"""A client that leaves while its request waits on Redis: redis-py can return the reply with the
task's cancellation still pending (router_gateway/task_stop.py), so without a check the request went
on to the expert, whose answer nobody would read, and was logged and billed as served."""
from __future__ import annotations

import asyncio

import orjson
import pytest

from router_gateway import pipeline
from router_gateway.container import Gateway, GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.domain.protocol import parse_chat_request
from router_gateway.pipeline import CallContext, ChatService
from tests.support.configs import config_text, fake_experts
from tests.support.fakes import HashEmbedder, fake_connect


def test_a_cancellation_swallowed_before_forwarding_stops_the_request(tmp_path, monkeypatch):
    config = parse_config(config_text(fake_experts({"okone": {}}), routers={"s": {"type": "strongest"}},
                                      profiles={"auto": {"router": "s"}}, log_path=tmp_path / "log.db",
                                      flush_interval_ms=20))
    entered = asyncio.Event()

    async def admit_that_swallows(*args, **kwargs):
        """What redis-py does at times: the reply arrives, the CancelledError does not."""
        entered.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass
        return None

    monkeypatch.setattr(pipeline, "admit_profile", admit_that_swallows)
    calls: list = []

    async def scenario():
        gateway = Gateway(GatewayOptions(config=config, connect=fake_connect(calls), embedder=HashEmbedder(),
                                         health_interval_s=0))
        await gateway.start()
        try:
            body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
            ctx = CallContext("req-gone", body, len(orjson.dumps(body)))
            task = asyncio.create_task(ChatService(gateway).handle(parse_chat_request(body), ctx))
            await entered.wait()
            ctx.client_gone = True  # what chat_endpoint does when the client disconnects
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await gateway.request_log.flush()
            return gateway.runtime.active, await gateway.request_log.recent(5)
        finally:
            await gateway.close()

    active, records = asyncio.run(scenario())
    assert calls == []  # the expert never got the request
    assert active == 0
    assert [(r["request_id"], r["status"]) for r in records] == [("req-gone", 499)]
    assert records[0]["error"] == "cancelled before the answer: the client disconnected"
