"""``shadow.usd_per_day`` holds for all replicas together (a real redis-server), not per replica."""
from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from router_gateway.container import Gateway, GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.learning.day_cap import SharedDayCap
from tests.support.learning_gateway import (
    TopicEmbedder,
    drain,
    judge_connect,
    learning_config,
    serve,
)
from tests.support.servers import start_redis

DAY = 86400.0


def test_two_replicas_cannot_both_take_the_last_dollar(redis_url):
    async def go():
        clients = [aioredis.from_url(redis_url) for _ in range(2)]
        clock = [10 * DAY + 5.0]
        caps = [SharedDayCap(lambda c=c: c, "t:", 1.0, clock=lambda: clock[0]) for c in clients]
        try:
            days = await asyncio.gather(*(caps[i % 2].reserve(0.25) for i in range(10)))
            granted = [d for d in days if d is not None]
            await caps[0].settle(granted[0], 0.25, 0.0)  # that job spent nothing: its quarter is free again
            after_release = await caps[1].reserve(0.25)
            full = await caps[0].reserve(0.25)
            clock[0] += DAY  # a new UTC day starts from zero
            next_day = await caps[1].reserve(0.25)
            ttl = await clients[0].ttl(caps[0].key())
            return len(granted), after_release, full, next_day, await caps[0].today_usd(), ttl
        finally:
            for c in clients:
                await c.aclose()

    granted, after_release, full, next_day, today, ttl = asyncio.run(go())
    assert granted == 4  # 4 x 0.25 = the cap, whichever replica asked
    assert after_release is not None and full is None
    assert next_day is not None and today == 0.25
    assert 0 < ttl <= 2 * DAY  # yesterday's counter does not stay forever


def test_unreachable_redis_refuses_shadow_spend():
    async def go():
        server = start_redis()
        client = aioredis.from_url(f"redis://127.0.0.1:{server.port}/0")
        cap = SharedDayCap(lambda: client, "t:", 1.0)
        first = await cap.reserve(0.1)
        server.stop()
        try:
            second = await cap.reserve(0.1)
        finally:
            await client.aclose()
        disconnected = await SharedDayCap(lambda: None, "t:", 1.0).reserve(0.1)
        return first, second, disconnected, cap.unreachable

    first, second, disconnected, unreachable = asyncio.run(go())
    assert first is not None
    assert second is None and disconnected is None and unreachable == 1


def _replica(tmp_path, name: str, usd_per_day: float):
    """Each replica its own log; shadow answers of 8 tokens at most, so a job's reservation is close
    to what it spends (the fake experts answer in 5)."""
    text = learning_config(tmp_path, min_labels=1000)
    text = text.replace("usd_per_day: 1.0", f"usd_per_day: {usd_per_day}\n    max_tokens: 8")
    return parse_config(text.replace(str(tmp_path / "log.db"), str(tmp_path / f"{name}.db")))


async def _spend_of_two_replicas(tmp_path, redis_url: str | None, usd_per_day: float):
    calls: list = []
    replicas = []
    for name in ("a", "b"):
        g = Gateway(GatewayOptions(config=_replica(tmp_path, name, usd_per_day), connect=judge_connect(calls),
                                   embedder=TopicEmbedder(), health_interval_s=0, redis_url=redis_url))
        await g.start()
        replicas.append(g)
    try:
        for g in replicas:
            await serve(g, 40)
            await drain(g)
        statuses = [await g.learning.status() for g in replicas]
        refused = [g.learning.day_cap.refused if g.learning.day_cap else 0 for g in replicas]
        return [s["spend"]["shadow_usd"] for s in statuses], statuses[0]["spend"]["today_usd_all_replicas"], refused
    finally:
        for g in replicas:
            await g.close()


def test_usd_per_day_caps_every_replica_together(tmp_path, redis_url):
    cap = 0.002  # about seven shadow jobs of the fake experts; each replica serves 40 requests
    assert _replica(tmp_path, "x", cap).learning.shadow.usd_per_day == cap
    alone, none, _ = asyncio.run(_spend_of_two_replicas(tmp_path / "alone", None, cap))
    shared, counter, refused = asyncio.run(_spend_of_two_replicas(tmp_path / "shared", redis_url, cap))
    assert none is None
    assert sum(alone) > cap  # without Redis each replica holds only its own cap
    assert refused[1] > 0  # the second replica was refused what the first had spent ...
    assert cap / 2 < sum(shared) <= cap  # ... so together they spent one cap
    assert counter == pytest.approx(sum(shared), rel=1e-6, abs=1e-9)  # the counter is what they spent
