"""A failure between forward() and the handler (session affinity, the endpoint's result hook) while the
result holds a stream: the stream is closed, so the expert's slot comes back and the request is logged."""
from __future__ import annotations

import asyncio

import orjson
import pytest

from router_gateway.container import Gateway, GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.domain.protocol import parse_chat_request
from router_gateway.pipeline import CallContext, ChatService
from tests.support.fakes import HashEmbedder, fake_connect


def test_a_hook_that_fails_on_a_stream_gives_the_expert_slot_back(tmp_path):
    config = parse_config(
        "experts:\n  okone: {base_url: http://fake/v1, model: okone, prior_quality: 0.5,\n"
        "         price: {input_per_mtok: 1, output_per_mtok: 1}}\n"
        "routers: {s: {type: strongest}}\nprofiles: {auto: {router: s}}\n"
        f"logging: {{path: {tmp_path / 'log.db'}, flush_interval_ms: 20}}\n")

    async def scenario():
        gateway = Gateway(GatewayOptions(config=config, connect=fake_connect(), embedder=HashEmbedder(),
                                         health_interval_s=0))
        await gateway.start()
        try:
            body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
            ctx = CallContext("req-hook", body, len(orjson.dumps(body)))

            def broken_hook(result):
                assert result.stream is not None  # the stream was open when the hook failed
                raise RuntimeError("a bug in the result hook")

            ctx.on_result = broken_hook
            with pytest.raises(RuntimeError, match="result hook"):
                await ChatService(gateway).handle(parse_chat_request(body), ctx)
            inflight = gateway.state.inflight("okone")
            active = gateway.runtime.active
            await gateway.request_log.flush()
            return inflight, active, await gateway.request_log.recent(5)
        finally:
            await gateway.close()

    inflight, active, records = asyncio.run(scenario())
    assert inflight == 0  # before the fix the slot stayed taken: the unread stream was never closed
    assert active == 0
    assert [(r["request_id"], r["status"]) for r in records] == [("req-hook", 500)]
