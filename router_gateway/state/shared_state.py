"""State shared by gateway replicas through Redis (``REDIS_URL``), with a local fallback.

What is shared: rate-limit counters and budgets (services.limits.SharedLimiter), circuit-breaker
state and in-flight counts (synchronised here in the background, so the request path pays no Redis
round-trip for them), and bandit statistics (``get_stats`` / ``add_stats``).

Every ``sync_interval_s`` one pipelined round-trip publishes this replica's in-flight counts and
breaker transitions and reads everyone else's. A breaker that opens on one replica is open on all
within one interval; the newest transition wins.

If Redis goes away the gateway keeps serving on local state: ``client()`` returns None, ``/ready``
reports ``shared_state.connected: false`` and the log says so once. The loop keeps pinging; when
Redis answers again, what was recorded meanwhile (usage, breaker transitions, bandit deltas) is
pushed and the log says the state was resynchronised.
"""
from __future__ import annotations

import asyncio
import io
import logging
import os
import time
import uuid
from typing import Any

import numpy as np
import orjson

from router_gateway.state.expert_state import ExpertState
from router_gateway.task_stop import cancellation_pending, stop_tasks

log = logging.getLogger("router_gateway.shared_state")


class SharedState:
    """One Redis connection (or none) and what rides on it; ``url=None`` means local only."""

    def __init__(self, url: str | None, state: ExpertState, sync_interval_s: float = 0.25,
                 prefix: str = "rg:"):
        self.url = url
        self.state = state
        self.sync_interval_s = sync_interval_s
        self.prefix = prefix
        self.replica = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.connected = False
        self.last_error: str | None = None
        self.limiter = None  # set by the gateway: a SharedLimiter that resyncs with us
        self._redis = None
        self._task: asyncio.Task | None = None
        self._stats: dict[str, dict[str, np.ndarray]] = {}  # router -> last known + local deltas
        self._stats_pending: dict[str, dict[str, np.ndarray]] = {}  # deltas not yet in Redis

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    async def start(self) -> None:
        if not self.enabled:
            return
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        # no client-side retries: a Redis that is down must cost one fast failure, then local state
        self._redis = aioredis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5,
                                        retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        await self._try_reconnect()
        if not self.connected:
            log.warning("Redis at %s unreachable (%s): serving on local state until it answers",
                        _redact(self.url), self.last_error)
        self._task = asyncio.create_task(self._loop(), name="shared-state-sync")

    async def close(self) -> None:
        if self._task:
            await stop_tasks([self._task], "shared state")
        if self._redis is not None and self.connected:
            try:
                await self._redis.delete(f"{self.prefix}inflight:{self.replica}")
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if self._redis is not None:
            await self._redis.aclose()

    def client(self):
        """The Redis client while connected, else None (callers then use local state)."""
        return self._redis if self.connected else None

    def mark_down(self, exc: BaseException) -> None:
        if self.connected:
            log.warning("Redis unavailable (%s: %s): serving on local state", type(exc).__name__, exc)
        self.connected = False
        self.last_error = f"{type(exc).__name__}: {exc}"

    def status(self) -> dict[str, Any]:
        if not self.enabled:
            return {"backend": "local"}
        out = {"backend": "redis", "connected": self.connected, "replica": self.replica}
        if not self.connected:
            out["degraded"] = "Redis unreachable: limits, budgets and circuits are per replica until it returns"
            out["last_error"] = self.last_error
        return out

    # -- the background loop ---------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval_s)
            try:  # a failure inside a reconnect (Redis gone again at once) must not end the loop either
                await (self.sync() if self.connected else self._try_reconnect())
            except Exception as exc:  # noqa: BLE001
                self.mark_down(exc)
            if cancellation_pending():  # a Redis reply can swallow our cancellation (task_stop)
                raise asyncio.CancelledError

    async def _try_reconnect(self) -> None:
        try:
            await self._redis.ping()
        except Exception as exc:  # noqa: BLE001
            self.last_error = f"{type(exc).__name__}: {exc}"
            return
        was_error = self.last_error is not None
        # breaker transitions made while Redis was away are still queued: the next sync pushes them
        self.connected, self.last_error = True, None
        if self.limiter is not None:
            await self.limiter.resync()
        await self._push_stats()
        await self.sync()
        if was_error:
            log.warning("Redis reachable again: shared state resynchronised")

    async def sync(self) -> None:
        """One round-trip: publish our in-flight counts and breaker changes, read everyone's."""
        now = time.time()
        p = self.prefix
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(f"{p}inflight:{self.replica}", orjson.dumps(self.state.local_inflight()),
                 px=int(max(2.0, self.sync_interval_s * 8) * 1000))
        pipe.zadd(f"{p}replicas", {self.replica: now})
        pipe.zremrangebyscore(f"{p}replicas", "-inf", now - max(5.0, self.sync_interval_s * 20))
        changes = self.state.take_changes()
        if changes:
            # newest-wins merge happens on read; write only what is newer than what Redis has
            pipe.hset(f"{p}circuit", mapping={n: orjson.dumps(v) for n, v in changes.items()})
        pipe.hgetall(f"{p}circuit")
        pipe.zrange(f"{p}replicas", 0, -1)
        results = await pipe.execute()
        circuits, replicas = results[-2], results[-1]
        others = [r.decode() for r in replicas if r.decode() != self.replica]
        remote_inflight: dict[str, int] = {}
        if others:
            for blob in await self._redis.mget([f"{p}inflight:{r}" for r in others]):
                for name, count in (orjson.loads(blob) if blob else {}).items():
                    remote_inflight[name] = remote_inflight.get(name, 0) + int(count)
        self.state.set_remote_inflight(remote_inflight)
        for name, blob in circuits.items():
            self.state.apply_remote(name.decode(), orjson.loads(blob))

    # -- bandit statistics -----------------------------------------------------------------
    async def get_stats(self, router: str) -> dict[str, np.ndarray]:
        """The router's statistics arrays summed over every replica (local view while Redis is down)."""
        redis = self.client()
        if redis is not None:
            try:
                raw = await redis.hgetall(f"{self.prefix}bandit:{router}")
                stats = {k.decode(): _load_array(v) for k, v in raw.items()}
                for name, delta in self._stats_pending.get(router, {}).items():
                    stats[name] = stats[name] + delta if name in stats else delta.copy()
                self._stats[router] = stats
            except Exception as exc:  # noqa: BLE001
                self.mark_down(exc)
        return {k: v.copy() for k, v in self._stats.get(router, {}).items()}

    async def add_stats(self, router: str, deltas: dict[str, np.ndarray]) -> None:
        """Add arrays element-wise (shapes must match what is stored): atomic across replicas."""
        local = self._stats.setdefault(router, {})
        pending = self._stats_pending.setdefault(router, {})
        for name, delta in deltas.items():
            delta = np.asarray(delta, dtype=np.float64)
            local[name] = local[name] + delta if name in local else delta.copy()
            pending[name] = pending[name] + delta if name in pending else delta.copy()
        if self.client() is not None:
            await self._push_stats()

    async def _push_stats(self) -> None:
        from redis.exceptions import WatchError
        for router in list(self._stats_pending):
            deltas = self._stats_pending.get(router)
            if not deltas:
                continue
            key = f"{self.prefix}bandit:{router}"
            try:
                while True:  # optimistic: re-read and retry if another replica wrote in between
                    async with self._redis.pipeline(transaction=True) as pipe:
                        try:
                            await pipe.watch(key)
                            current = {k.decode(): _load_array(v) for k, v in (await pipe.hgetall(key)).items()}
                            merged = {n: current[n] + d if n in current else d for n, d in deltas.items()}
                            pipe.multi()
                            pipe.hset(key, mapping={n: _dump_array(a) for n, a in merged.items()})
                            await pipe.execute()
                            break
                        except WatchError:
                            continue
            except Exception as exc:  # noqa: BLE001
                self.mark_down(exc)
                return
            self._stats_pending.pop(router, None)


def _dump_array(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a, dtype=np.float64), allow_pickle=False)
    return buf.getvalue()


def _load_array(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


def _redact(url: str | None) -> str:
    """redis://user:password@host -> redis://***@host: never log a secret."""
    if not url or "@" not in url:
        return url or ""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
