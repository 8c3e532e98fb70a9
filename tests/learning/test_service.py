"""The learning loop inside a gateway (in-process, fake experts and a fake judge behind the real
forwarder): shadow answers are graded, labels stored, a candidate promoted by hot swap, reverted."""
from __future__ import annotations

import asyncio

import httpx
import numpy as np
import orjson

from router_gateway.container import Gateway, GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.domain.protocol import parse_chat_request
from router_gateway.http.memory import InMemoryConnector
from router_gateway.pipeline import CallContext, ChatService
from tests.support.learning_gateway import (
    TopicEmbedder,
    drain,
    judge_connect,
    learning_config,
    serve,
)
from tests.support.polling import wait_until


def test_shadow_labels_promote_and_revert(tmp_path):
    calls: list = []
    config = parse_config(learning_config(tmp_path))

    async def go():
        gateway = Gateway(GatewayOptions(config=config, connect=judge_connect(calls), embedder=TopicEmbedder(),
                                         health_interval_s=0))
        await gateway.start()
        try:
            before = await serve(gateway, 60)
            await drain(gateway)
            status = await gateway.learning.status()
            after = await serve(gateway, 20, start=100)
            await drain(gateway)  # their shadow jobs may retrain and promote again: let them finish
            live_router = gateway.runtime.config.profiles["auto"].router
            reverted = await gateway.learning.revert()
            want = "strong" if reverted is None else "learned:auto"
            # the swap is scheduled on the event loop by the promoter
            await wait_until(lambda: gateway.runtime.config.profiles["auto"].router == want
                             and not gateway.learning._swaps, timeout=2.0)
            back = gateway.runtime.config.profiles["auto"].router
            await gateway.request_log.flush()
            logged = await gateway.request_log.recent(2000)
            return before, status, after, live_router, reverted, back, logged
        finally:
            await gateway.close()

    before, status, after, live_router, reverted, back, logged = asyncio.run(go())
    assert set(before[:10]) == {"dear"}  # the strongest baseline at first
    assert status["labels"]["prompts"] >= 16 and status["stats"]["judge_calls"] > 0
    assert any(e["kind"] == "promotion" for e in status["history"])
    assert live_router == "learned:auto"
    # the promoted router sends maths (odd i) to cheap, poems to dear
    assert after == ["dear" if i % 2 == 0 else "cheap" for i in range(100, 120)]
    # one step back: to the previous artifact, or to the configured router after a single promotion
    assert back == ("strong" if reverted is None else "learned:auto")
    assert status["spend"]["shadow_usd"] > 0 and status["spend"]["live_usd"] > 0
    profiles = {r.get("profile") for r in logged}
    assert {"learning:shadow", "learning:judge"} <= profiles  # shadow and judge calls are logged and priced
    assert all(r["cost_usd"] > 0 for r in logged if r.get("profile") == "learning:judge")


def test_budget_caps_shadow_spend(tmp_path):
    calls: list = []
    config = parse_config(learning_config(tmp_path, share=0.05, min_labels=1000))

    async def go():
        gateway = Gateway(GatewayOptions(config=config, connect=judge_connect(calls), embedder=TopicEmbedder(),
                                         health_interval_s=0))
        await gateway.start()
        try:
            await serve(gateway, 40)
            await drain(gateway)
            return gateway.learning.budget.shadow_usd, gateway.learning.budget.live_usd
        finally:
            await gateway.close()

    shadow, live = asyncio.run(go())
    assert live > 0
    assert shadow <= 0.05 * live + 1e-12


def test_shadow_work_waits_while_a_client_request_is_in_flight(tmp_path):
    """Shadow jobs share the event loop with clients: a step starts only when no client request is in
    flight (learning.service.yield_to_clients), so it cannot delay one."""
    calls: list = []
    config = parse_config(learning_config(tmp_path, min_labels=1000))

    async def go():
        gateway = Gateway(GatewayOptions(config=config, connect=judge_connect(calls), embedder=TopicEmbedder(),
                                         health_interval_s=0))
        await gateway.start()
        try:
            client = gateway.acquire()  # a (long) client request in flight
            await serve(gateway, 1)     # another one, answered: its shadow job is queued
            await asyncio.sleep(0.3)
            during = list(calls)
            gateway.release(client)
            await drain(gateway)
            return during, list(calls), dict(gateway.learning.stats)
        finally:
            await gateway.close()

    during, after, stats = asyncio.run(go())
    assert during == ["dear"]  # only the client's own call while a client was in flight
    assert stats["yields"] > 0
    assert "judge" in after and len(after) > 1  # the shadow job ran once the client was done


def flaky_judge_connect(calls: list) -> InMemoryConnector:
    """Like judge_connect, but the judge's first verdict on dear's answer to 'poem 20' is wrong (0):
    asked again, it says 10."""
    seen: dict = {}
    inner = judge_connect(calls)

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            body = orjson.loads(request.content)
            text = body["messages"][-1]["content"]
            if body["model"] == "judge" and "[Question]\npoem 20\n" in text and "[Answer]\nfrom dear\n" in text:
                seen["n"] = seen.get("n", 0) + 1
                calls.append("judge:poem 20")
                content = "0" if seen["n"] == 1 else "10"
                return httpx.Response(200, json={"id": "x", "object": "chat.completion", "model": "judge",
                                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                                                 "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}})
        return await inner.handler(request)

    return InMemoryConnector(handler)


def test_a_surprising_judge_grade_is_asked_again_and_the_majority_kept(tmp_path):
    async def go(regrade: int):
        calls: list = []
        text = learning_config(tmp_path / str(regrade), min_labels=1000, judge={"regrade": regrade})
        gateway = Gateway(GatewayOptions(config=parse_config(text), connect=flaky_judge_connect(calls),
                                         embedder=TopicEmbedder(), health_interval_s=0))
        await gateway.start()
        try:
            await serve(gateway, 30)
            await drain(gateway)
            data = gateway.learning.store.training_set(gateway.learning.experts)
            dear = gateway.learning.experts.index("dear")
            return data.Y[:, dear], calls.count("judge:poem 20"), gateway.learning.stats.get("regraded", 0)
        finally:
            await gateway.close()

    (tmp_path / "0").mkdir()
    (tmp_path / "2").mkdir()
    plain, asked_plain, _ = asyncio.run(go(0))
    regraded, asked, n_regraded = asyncio.run(go(2))
    assert asked_plain == 1 and np.nanmin(plain) == 0.0  # the wrong verdict is kept without re-grading
    # dear's mean grade was 1 before 'poem 20': its 0 surprises, the judge is asked until two calls agree
    assert asked == 3 and n_regraded >= 1
    assert np.nanmin(regraded) == 1.0


def test_shadow_work_waits_until_the_answer_is_sent(tmp_path):
    """The request is released before its answer goes out (ChatService logs, then the HTTP layer
    sends): shadow work must wait for the send too, or it runs while the client still waits."""
    from router_gateway.app import create_app

    calls: list = []
    options = GatewayOptions(config=parse_config(learning_config(tmp_path, min_labels=1000)),
                             connect=judge_connect(calls), embedder=TopicEmbedder(), health_interval_s=0)
    app = create_app(options)
    body = orjson.dumps({"model": "auto", "messages": [{"role": "user", "content": "math 1"}]})
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "root_path": "", "query_string": b"", "headers": [(b"content-type", b"application/json")],
             "http_version": "1.1", "scheme": "http", "server": ("test", 80), "client": ("test", 1)}

    async def go():
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # no disconnect: the client stays

        during_send = []

        async def send(message):
            if message["type"] == "http.response.body" and not message.get("more_body"):
                await asyncio.sleep(0.3)  # a slow socket: the answer is still on its way
                during_send.extend(calls)

        async with app.router.lifespan_context(app):
            await app(scope, receive, send)
            gateway = app.state.gateway
            await drain(gateway)
            return during_send, list(calls)

    during_send, after = asyncio.run(go())
    assert during_send == ["dear"]  # only the client's own call until its answer was sent
    assert "judge" in after and "cheap" in after  # then the shadow job ran


def test_canary_serves_its_share_then_goes_live_on_its_realised_grades(tmp_path):
    """promote.canary: a passing candidate first decides a share of the requests (x-router-router,
    propensities in the log), and goes live once its realised grades are not worse than the live arm's."""
    calls: list = []
    config = parse_config(learning_config(tmp_path, promote={"canary": {"share": 0.5, "min_graded": 5}}))

    async def go():
        gateway = Gateway(GatewayOptions(config=config, connect=judge_connect(calls), embedder=TopicEmbedder(),
                                         health_interval_s=0))
        await gateway.start()
        chat = ChatService(gateway)
        try:
            routers, started, i = [], None, 0
            while i < 400 and gateway.runtime.config.profiles["auto"].router != "learned:auto":
                body = {"model": "auto", "messages": [{"role": "user", "content": ("math " if i % 2 else "poem ") + str(i)}]}
                out = await chat.handle(parse_chat_request(body), CallContext(f"req-{i}", body, 80))
                routers.append(out.headers.get("x-router-router"))
                if started is None and gateway.runtime.config.profiles["auto"].canary is not None:
                    started = (gateway.learning.promoter.canary, gateway.runtime.config.profiles["auto"].canary)
                i += 1
                await asyncio.sleep(0.01)  # a quiet moment: shadow steps run between requests
                await drain(gateway) if i % 10 == 0 else None
            await gateway.request_log.flush()
            logged = await gateway.request_log.recent(4000)
            for _ in range(100):  # the promotion event is written just after the swap
                status = await gateway.learning.status()
                if any(e["kind"] == "promotion" for e in status["history"]):
                    break
                await asyncio.sleep(0.05)
            return routers, started, gateway.runtime.config.profiles["auto"], logged, status
        finally:
            await gateway.close()

    routers, started, profile, logged, status = asyncio.run(go())
    assert started is not None and started[1].share == 0.5  # a canary ran beside the live router
    assert "learned-canary:auto" in routers and "strong" in routers[routers.index("learned-canary:auto"):]
    on_trial = [r for r in logged if r.get("router") == "learned-canary:auto"]
    assert on_trial and all(r["propensity"] == 0.5 for r in on_trial)  # arm share x the router's own (1.0)
    assert profile.router == "learned:auto" and profile.canary is None  # the check confirmed it
    kinds = [e["kind"] for e in status["history"]]
    assert "canary" in kinds and "promotion" in kinds
    promotion = next(e for e in status["history"] if e["kind"] == "promotion")
    assert promotion["via"] == "canary" and promotion["check"]["passed"]
