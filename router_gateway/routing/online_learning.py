"""Online learning from feedback for routers that support it (the contextual bandit).

POST /v1/feedback -> the logged request (prompt, chosen expert, propensity) -> its embedding ->
``router.partial_fit``. The update is kept as additive deltas of the router's sufficient statistics
(``online_stats``: LinUCB's A and b), summed across replicas by the shared state (Redis when
REDIS_URL is set, in-process otherwise): every replica's router = artifact + all replicas' deltas.
"""
from __future__ import annotations

import asyncio
import logging

import numpy as np

from router_gateway.domain.record import RequestRecord

log = logging.getLogger("router_gateway.online")


def learns_online(loaded) -> bool:
    """A loaded router that declares it learns online and names the additive statistics to share."""
    router = loaded.router
    return bool(router.learns_online and router.online_stats)


class OnlineLearner:
    """Applies feedback to online routers and keeps them in step with the other replicas."""

    def __init__(self, gateway, refresh_s: float = 2.0):
        self.gateway = gateway
        self.refresh_s = refresh_s
        self._base: dict[tuple[int, str], dict[str, np.ndarray]] = {}  # (config version, router) -> artifact arrays
        self.updates = 0

    def _baseline(self, version: int, name: str, router) -> dict[str, np.ndarray]:
        key = (version, name)
        if key not in self._base:
            self._base[key] = {a: np.array(getattr(router, a), dtype=np.float64) for a in router.online_stats}
        return self._base[key]

    async def learn(self, request_id: str, score: float) -> bool:
        """Update the router that made this request's decision; False when there is nothing to learn."""
        gateway = self.gateway
        row = await gateway.request_log.get(request_id)
        record = RequestRecord.from_row(row) if row else None
        runtime = gateway.runtime
        if record is None or not record.router or runtime is None:
            return False
        loaded = runtime.routing.routers.get(record.router)
        if loaded is None or not learns_online(loaded):
            return False
        router = loaded.router
        chosen, propensity, prompt = record.chosen_expert, record.propensity, record.prompt
        if chosen not in router.experts_ or not propensity or not prompt or gateway.embedder is None:
            return False  # a fallback answered, or prompts are not stored: nothing attributable
        x = await gateway.embedder.embed_one(prompt)
        base = self._baseline(runtime.version, loaded.name, router)
        before = {a: np.array(getattr(router, a)) for a in router.online_stats}
        router.partial_fit(x[None, :], [router.experts_.index(chosen)], [score], [propensity])
        deltas = {a: np.asarray(getattr(router, a)) - before[a] for a in router.online_stats}
        await gateway.shared.add_stats(self._stats_key(runtime.version, loaded.name), deltas)
        await self._apply(runtime.version, loaded.name, router, base)
        self.updates += 1
        return True

    async def refresh_loop(self) -> None:
        """Pull the other replicas' updates into every online router, every ``refresh_s``."""
        while True:
            await asyncio.sleep(self.refresh_s)
            runtime = self.gateway.runtime
            if runtime is None or self.gateway.shared is None:
                continue
            for name, loaded in runtime.routing.routers.items():
                if learns_online(loaded):
                    try:
                        base = self._baseline(runtime.version, name, loaded.router)
                        await self._apply(runtime.version, name, loaded.router, base)
                    except Exception as exc:  # keep serving on the local statistics
                        log.warning("could not refresh online router %s: %s", name, exc)

    async def _apply(self, version: int, name: str, router, base: dict[str, np.ndarray]) -> None:
        shared = await self.gateway.shared.get_stats(self._stats_key(version, name))
        for attr in router.online_stats:
            if attr in shared and shared[attr].shape == base[attr].shape:
                setattr(router, attr, base[attr] + shared[attr])
        router._after_load()  # drop caches derived from the statistics

    def _stats_key(self, version: int, name: str) -> str:
        # statistics belong to one artifact: a new artifact (its digest) starts a new sum
        loaded = self.gateway.runtime.routing.routers[name]
        digest = (loaded.meta or {}).get("arrays_sha256", "none")[:12]
        return f"{name}:{digest}"
