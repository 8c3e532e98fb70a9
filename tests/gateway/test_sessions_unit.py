"""Session affinity in process: key derivation, the store's TTL, and the policy on real routing decisions
(fake expert behind the in-memory connection, hashing embedder)."""
from __future__ import annotations

import asyncio
import itertools

import orjson
import pytest

from router_gateway.api.openai_endpoints import (
    RESPONSES,
    parse_responses,
    response_recorder,
)
from router_gateway.container import Gateway, GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.domain.errors import BadRequest, NoExpertAvailable
from router_gateway.domain.protocol import ChatMessage, parse_chat_request
from router_gateway.pipeline import CallContext, ChatService
from router_gateway.state.sessions import AffinityStore, session_ref
from tests.support.configs import config_text, fake_experts
from tests.support.fakes import HashEmbedder, fake_connect

SYSTEM = {"role": "system", "content": "You are a helpful travel assistant."}
TURN1 = [SYSTEM, {"role": "user", "content": "Plan two days in Lisbon."}]
TURN2 = TURN1 + [{"role": "assistant", "content": "Day 1: Alfama..."},
                 {"role": "user", "content": "Make day 2 cheaper."}]


def msgs(raw: list[dict]) -> list[ChatMessage]:
    return [ChatMessage(**m) for m in raw]


# -- the key -------------------------------------------------------------------------------------------
def test_key_order_header_then_body_fields_then_opening():
    body = {"prompt_cache_key": "pck", "user": "u1", "metadata": {"session_id": "m1"}}
    assert session_ref({"x-session-id": "h1"}, body, msgs(TURN1), None).source == "header"
    assert session_ref({}, body, msgs(TURN1), None).source == "prompt_cache_key"
    assert session_ref({}, {"user": "u1", "metadata": {"session_id": "m1"}}, msgs(TURN1), None).source == "user"
    assert session_ref({}, {"metadata": {"conversation_id": "m1"}}, msgs(TURN1), None).source == "metadata"
    assert session_ref({}, {}, msgs(TURN1), None).source == "opening"


def test_opening_digest_is_stable_across_turns_and_marks_the_first_turn():
    first, second = session_ref({}, {}, msgs(TURN1), None), session_ref({}, {}, msgs(TURN2), None)
    assert first.key == second.key and first.key.startswith("s-")
    assert first.opening and not second.opening  # turn 1 starts a conversation: routed freely
    other = session_ref({}, {}, msgs([SYSTEM, {"role": "user", "content": "Plan two days in Porto."}]), None)
    assert other.key != first.key


def test_keys_are_scoped_by_api_key_and_never_show_the_raw_value():
    a = session_ref({}, {"user": "alice@example.com"}, msgs(TURN1), "key-a")
    b = session_ref({}, {"user": "alice@example.com"}, msgs(TURN1), "key-b")
    assert a.key != b.key and "alice" not in a.key


def test_store_ttl_and_bound():
    now = [0.0]
    store = AffinityStore(max_entries=3, clock=lambda: now[0])
    store.put("s1", "x", ttl_s=10)
    assert store.get_local("s1") == "x"
    now[0] = 10.5
    assert store.get_local("s1") is None  # expired
    for i in range(5):
        store.put(f"k{i}", "y", ttl_s=100)
    assert len(store._local) == 3 and store.get_local("k0") is None and store.get_local("k4") == "y"


# -- the policy on real decisions ------------------------------------------------------------------------
EXPERTS = fake_experts({"okcheap": {"price": 0.1, "q": 0.5}, "okdear": {"price": 5.0, "q": 0.9},
                        "oksmall": {"price": 0.01, "q": 0.2, "ctx": 300}})


@pytest.fixture
def conversation(tmp_path):
    """Run ``steps(gateway, call)`` on one in-process gateway; ``call(body, headers, cost_weight)``."""
    def _run(steps, profile_extra: dict | None = None):
        async def go():
            text = config_text(EXPERTS, routers={"s": {"type": "strongest"}}, log_path=tmp_path / "log.db",
                               flush_interval_ms=20,
                               profiles={"auto": {"router": "s", "cost_weight": 1.0, **(profile_extra or {})}})
            gateway = Gateway(GatewayOptions(config=parse_config(text),
                                             connect=fake_connect(), embedder=HashEmbedder(),
                                             health_interval_s=0))
            await gateway.start()
            service = ChatService(gateway)
            ids = itertools.count()

            async def call(body, headers=None, cost_weight=None, endpoint=None):
                chat = parse_responses(body, gateway.runtime.config) if endpoint is RESPONSES \
                    else parse_chat_request(body)
                ctx = CallContext(f"req-{next(ids)}", body, len(orjson.dumps(body)), cost_weight)
                ctx.session = session_ref(headers or {}, body, chat.messages, None)
                if endpoint is RESPONSES:
                    ctx.endpoint = RESPONSES
                    ctx.on_result = response_recorder(body, gateway.affinity.remember_response)
                outcome = await service.handle(chat, ctx)
                if outcome.stream is not None:
                    outcome.body = b"".join([e async for e in outcome.stream])
                return outcome

            try:
                result = await steps(gateway, call)
                await gateway.request_log.flush()
                return result, await gateway.request_log.recent(50)
            finally:
                await gateway.close()
        return asyncio.run(go())
    return _run


def test_conversation_keeps_its_expert_when_the_policy_would_move_it(conversation):
    async def steps(gateway, call):
        first = await call({"model": "auto", "messages": TURN1}, cost_weight="1000")  # cheapest wins
        second = await call({"model": "auto", "messages": TURN2}, cost_weight="0")  # strongest would win
        fresh = await call({"model": "auto", "messages": TURN2[:1] + [{"role": "user", "content": "Other"},
                                                                        *TURN2[2:]]}, cost_weight="0")
        return first.headers, second.headers, fresh.headers
    (first, second, fresh), records = conversation(steps)
    assert first["x-router-expert"] == "oksmall" and first["x-router-affinity"] == "new"
    assert second["x-router-expert"] == "oksmall" and second["x-router-affinity"] == "kept"
    assert second["x-router-session"] == first["x-router-session"]
    assert fresh["x-router-expert"] == "okdear"  # another conversation: routed on its own
    kept = next(r for r in records if r["affinity"] == "kept")
    assert kept["session"] == first["x-router-session"] and kept["session_source"] == "opening"
    assert kept["propensity"] == 1.0 and kept["candidates"][0]["expert"] == "oksmall"


def test_session_moves_when_its_expert_cannot_take_the_context(conversation):
    long_turn = TURN2 + [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "more " * 400}]

    async def steps(gateway, call):
        first = await call({"model": "auto", "messages": TURN1}, cost_weight="1000")
        moved = await call({"model": "auto", "messages": long_turn}, cost_weight="1000")
        after = await call({"model": "auto", "messages": long_turn + [{"role": "user", "content": "x"}]},
                           cost_weight="0")
        return first.headers, moved.headers, after.headers
    (first, moved, after), records = conversation(steps)
    assert first["x-router-expert"] == "oksmall"
    assert moved["x-router-affinity"] == "moved" and moved["x-router-expert"] == "okcheap"
    assert after["x-router-affinity"] == "kept" and after["x-router-expert"] == "okcheap"  # pinned to the new one
    record = next(r for r in records if r["affinity"] == "moved")
    assert record["affinity_previous_expert"] == "oksmall"
    assert record["affinity_moved_reason"].startswith("context window")


def test_session_moves_when_its_expert_goes_down(conversation):
    async def steps(gateway, call):
        headers = {"x-session-id": "chat-42"}
        first = await call({"model": "auto", "messages": TURN1}, headers, cost_weight="1000")
        gateway.state.set_health("oksmall", "ConnectError")
        moved = await call({"model": "auto", "messages": TURN2}, headers, cost_weight="1000")
        return first.headers, moved.headers
    (first, moved), _ = conversation(steps)
    assert first["x-router-expert"] == "oksmall"
    assert moved["x-router-affinity"] == "moved" and moved["x-router-expert"] == "okcheap"


def test_profile_can_turn_affinity_off(conversation):
    async def steps(gateway, call):
        first = await call({"model": "auto", "messages": TURN1}, cost_weight="1000")
        second = await call({"model": "auto", "messages": TURN2}, cost_weight="0")
        return first.headers, second.headers
    (first, second), records = conversation(steps, {"affinity": {"enabled": False}})
    assert second["x-router-expert"] == "okdear" and second["x-router-affinity"] == "off"
    assert {r["affinity"] for r in records} == {"off"}


def test_previous_response_id_goes_back_to_the_expert_holding_it(conversation):
    async def steps(gateway, call):
        first = await call({"model": "oksmall", "input": "Plan two days in Lisbon."}, endpoint=RESPONSES)
        rid = orjson.loads(first.body)["id"]
        follow = await call({"model": "auto", "input": "cheaper?", "previous_response_id": rid},
                            cost_weight="0", endpoint=RESPONSES)
        streamed = await call({"model": "oksmall", "input": "again", "stream": True}, endpoint=RESPONSES)
        sid = streamed.body.split(b'"id":"', 1)[1].split(b'"', 1)[0].decode()
        follow2 = await call({"model": "auto", "input": "and?", "previous_response_id": sid}, cost_weight="0",
                             endpoint=RESPONSES)
        gateway.state.set_health("oksmall", "ConnectError")
        with pytest.raises(NoExpertAvailable) as down:  # transient: the response lives only there
            await call({"model": "auto", "input": "x", "previous_response_id": rid}, endpoint=RESPONSES)
        return follow.headers, follow2.headers, down.value
    (follow, follow2, down), records = conversation(steps)
    assert follow["x-router-expert"] == "oksmall" and follow2["x-router-expert"] == "oksmall"
    assert down.status == 503 and down.headers["Retry-After"] == "1"
    assert any(r.get("endpoint") == "responses" and r.get("affinity") == "pinned" for r in records)
    assert all(r["cost_usd"] and r["cost_usd"] > 0 for r in records if r["status"] == 200)  # usage priced


def test_static_ineligibility_is_400_with_param_and_code(conversation):
    async def steps(gateway, call):
        errors = []
        for body in ({"model": "auto", "messages": [{"role": "user", "content": "w " * 40000}]},
                     {"model": "auto", "messages": TURN1, "tools": [{"type": "function",
                                                                     "function": {"name": "f"}}]},
                     {"model": "auto", "input": "w " * 40000}):
            with pytest.raises(BadRequest) as info:
                await call(body, endpoint=RESPONSES if "input" in body else None)
            errors.append(info.value)
        for name in EXPERTS:
            gateway.state.set_health(name, "ConnectError")
        with pytest.raises(NoExpertAvailable) as down:  # transient stays 503
            await call({"model": "auto", "messages": TURN1})
        return errors, down.value
    (errors, down), _ = conversation(steps)
    assert [(e.code, e.param) for e in errors] == [("context_length_exceeded", "messages"),
                                                    ("unsupported_capability", "tools"),
                                                    ("context_length_exceeded", "input")]
    assert down.status == 503 and down.headers.get("Retry-After")


def test_replica_trusts_its_own_pin_for_trust_s_then_asks_redis():
    class FakeRedis:
        def __init__(self):
            self.gets, self.data = 0, {}

        async def get(self, key):
            self.gets += 1
            return self.data.get(key)

        async def set(self, key, value, px):
            self.data[key] = value.encode()

    redis = FakeRedis()
    shared = type("Shared", (), {"client": lambda self: redis, "mark_down": lambda self, exc: None})()
    now = [0.0]
    store = AffinityStore(shared, clock=lambda: now[0])

    async def go():
        store.put("s1", "x", ttl_s=600)
        await store.flush()
        assert store.lookup("s1") == "x" and redis.gets == 0  # within trust_s: the local copy
        redis.data["rg:affinity:s1"] = b"y"  # another replica moved the session
        now[0] = store.trust_s + 1
        assert await store.lookup("s1") == "y" and redis.gets == 1  # trust expired: Redis decides
        assert store.lookup("s1") == "y" and redis.gets == 1  # and is trusted again
        assert await store.lookup("unknown") is None and redis.gets == 2  # a miss always asks Redis
    asyncio.run(go())
