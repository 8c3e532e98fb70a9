"""Scrape each expert's engine metrics on an interval, off the request path, shared across replicas.

Alone, a gateway scrapes every expert that has a ``metrics_url``. With Redis, the replicas take turns:
each interval, per expert, the replica that wins a short lock (SET NX PX) scrapes and publishes the
sample and estimate; the others read what it published. An engine is then scraped once per interval
however many replicas there are, and every replica routes on the same view. If Redis is away each
replica scrapes for itself (the same answers, more scrapes). Scrapes go through the gateway's HTTP
client (router_gateway/http/get.py), the one the forwarder uses.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import orjson

from router_gateway.capacity.engine_metrics import (
    EngineSample,
    NoEngineMetrics,
    parse_engine_metrics,
)
from router_gateway.capacity.load import CapacityBook, LoadEstimate, estimate
from router_gateway.http.errors import UpstreamTransportError
from router_gateway.http.get import GetClient

log = logging.getLogger("router_gateway.capacity")

#: a metrics page larger than this is not an engine's (far above what vLLM serves)
MAX_METRICS_BYTES = 16 * 1024 * 1024


class EnginePoller:
    """Fills a CapacityBook from the experts' ``/metrics`` pages."""

    def __init__(self, book: CapacityBook, shared=None, http: GetClient | None = None, clock=time.time):
        self.book = book
        self.shared = shared  # services.shared_state.SharedState, or None
        self.http = http or GetClient()
        self.clock = clock
        self._prev: dict[str, tuple[EngineSample, float | None]] = {}  # last sample and drain rate
        self._warned: set[str] = set()

    async def run(self, experts_fn, interval_fn) -> None:
        """Poll forever: ``experts_fn()`` gives the current {name: Expert} (reloads change it)."""
        while True:
            interval = interval_fn()
            await self.poll_once(experts_fn(), interval)
            await asyncio.sleep(interval)

    async def poll_once(self, experts: dict, interval: float) -> None:
        targets = {n: e.metrics_url for n, e in experts.items() if getattr(e, "metrics_url", None)}
        await asyncio.gather(*(self._one(name, url, interval) for name, url in targets.items()))

    async def _one(self, name: str, url: str, interval: float) -> None:
        redis = self.shared.client() if self.shared is not None else None
        if redis is not None:
            try:
                if not await redis.set(self._key(name, "lock"), b"1", nx=True, px=max(50, int(interval * 900))):
                    await self._read_published(redis, name)
                    return
            except Exception as exc:  # noqa: BLE001 - Redis trouble: scrape locally this round
                self.shared.mark_down(exc)
                redis = None
        est = await self._scrape(name, url)
        if est is not None and redis is not None:
            await self._publish(redis, name, est, interval)

    async def _scrape(self, name: str, url: str) -> LoadEstimate | None:
        try:
            fetched = await self.http.get(url, max_bytes=MAX_METRICS_BYTES)
            if not 200 <= fetched.status < 300:
                raise ValueError(f"HTTP {fetched.status}")
            sample = parse_engine_metrics(fetched.body.decode("utf-8", "replace"), self.clock())
        except (UpstreamTransportError, NoEngineMetrics, ValueError) as exc:
            if name not in self._warned:  # once per expert: a misconfigured URL must not flood the log
                log.warning("engine metrics of %s unavailable at %s: %s", name, url, exc)
                self._warned.add(name)
            return None
        self._warned.discard(name)
        prev, prev_rate = self._prev.get(name, (None, None))
        est = estimate(prev, sample, prev_rate, wall_time=sample.at)
        self._prev[name] = (sample, est.drain_rate)
        self.book.put(name, est)
        return est

    async def _publish(self, redis, name: str, est: LoadEstimate, interval: float) -> None:
        sample, rate = self._prev[name]
        blob = orjson.dumps({"estimate": dataclasses.asdict(est), "sample": dataclasses.asdict(sample),
                             "rate": rate})
        try:
            await redis.set(self._key(name, "state"), blob, px=int(max(interval * 10, 5.0) * 1000))
        except Exception as exc:  # noqa: BLE001
            self.shared.mark_down(exc)

    async def _read_published(self, redis, name: str) -> None:
        blob = await redis.get(self._key(name, "state"))
        if not blob:
            return
        data = orjson.loads(blob)
        est = LoadEstimate(**data["estimate"])
        # keep the publisher's last sample: whichever replica scrapes next computes rates from it
        self._prev[name] = (EngineSample(**data["sample"]), data.get("rate"))
        self.book.put(name, est)

    def _key(self, name: str, what: str) -> str:
        return f"{self.shared.prefix}capacity:{what}:{name}"
