"""A key's spend in the current day and month, as budget pacing needs it on the request path.

Alone, the local limiter's counters are the truth. With replicas, the truth is in Redis; reading it
on every request would put a round-trip on the request path, so the view refreshes a key's figures in
the background at most once per ``refresh_s`` and adds what this replica spent since the fetch.
Pacing then acts on figures at most ``refresh_s`` old, which a controller integrating over a day or a
month does not notice.
"""
from __future__ import annotations

import asyncio
import time


class SpendView:
    """``spent(key_id) -> (day USD, month USD)`` without waiting on Redis."""

    def __init__(self, limiter, shared=None, refresh_s: float = 1.0, clock=time.monotonic):
        self.limiter = limiter  # state.limits LocalLimiter or SharedLimiter
        self.shared = shared
        self.refresh_s = refresh_s
        self.clock = clock
        self._fetched: dict[str, tuple[float, tuple[float, float], tuple[float, float]]] = {}
        self._pending: dict[str, asyncio.Task] = {}

    def _local(self):
        return getattr(self.limiter, "local", self.limiter)

    def spent(self, key_id: str) -> tuple[float, float]:
        local = self._local().spent(key_id)
        redis = self.shared.client() if self.shared is not None and self.shared.enabled else None
        if redis is None:
            return local
        fetched = self._fetched.get(key_id)
        if (fetched is None or self.clock() - fetched[0] > self.refresh_s) and key_id not in self._pending:
            task = asyncio.get_running_loop().create_task(self._fetch(redis, key_id, local))
            self._pending[key_id] = task
            task.add_done_callback(lambda _t, k=key_id: self._pending.pop(k, None))
        if fetched is None:
            return local
        _, shared_then, local_then = fetched
        return tuple(s + max(0.0, now - then) for s, now, then in zip(shared_then, local, local_then))

    async def _fetch(self, redis, key_id: str, local_now: tuple[float, float]) -> None:
        day_key, month_key = self.limiter._keys(key_id, time.time())[2:4]
        try:
            day, month = await redis.mget([day_key, month_key])
        except Exception as exc:  # noqa: BLE001 - pacing on local figures until Redis answers
            self.shared.mark_down(exc)
            return
        self._fetched[key_id] = (self.clock(), (float(day or 0.0), float(month or 0.0)), local_now)
