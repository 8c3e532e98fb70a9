"""The running gateway: the current config version (routers, routing, forwarder) and what outlives
reloads (embedder, expert state, request log).

A reload builds the new version completely before swapping it in; if anything fails the old one
keeps serving. A retired version is closed once the requests that started on it have finished.
"""
from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from router_gateway.capacity.load import CapacityBook
from router_gateway.capacity.pacing import BudgetPacer
from router_gateway.capacity.poller import EnginePoller
from router_gateway.capacity.spend import SpendView
from router_gateway.domain.config import GatewayConfig, load_config
from router_gateway.domain.config_yaml import ConfigError
from router_gateway.domain.record import RecordObserver
from router_gateway.embedding.batcher import BatchingEmbedder
from router_gateway.forwarding.breaker_probe import BreakerProber
from router_gateway.forwarding.forwarder import Forwarder
from router_gateway.http.get import GetClient
from router_gateway.http.http1 import Connector
from router_gateway.routing.affinity import Affinity
from router_gateway.routing.router_set import build_router_set
from router_gateway.routing.service import RoutingService
from router_gateway.runtime import Runtime
from router_gateway.state.expert_state import BreakerSettings, ExpertState
from router_gateway.state.health_checks import HealthChecker
from router_gateway.state.keys import ApiKey, KeyStore
from router_gateway.state.limits import LocalLimiter, SharedLimiter
from router_gateway.state.request_log import RequestLog
from router_gateway.state.sessions import AffinityStore
from router_gateway.state.shared_state import SharedState
from router_gateway.state.usage_settlement import UsageSettler
from router_gateway.task_stop import stop_tasks

log = logging.getLogger("router_gateway")


@dataclass
class GatewayOptions:
    """How to build the gateway (what tests override)."""

    config_path: Path | None = None
    config: GatewayConfig | None = None
    #: the HTTP client's connection factory for experts (forwarding, health checks, engine metrics):
    #: real TCP/TLS when None; unit tests pass an in-memory one (router_gateway.http.memory)
    connect: Connector | None = None
    embedder: object | None = None  # a ready Embedder, injected in tests
    health_interval_s: float | None = None  # None: server.health_interval_s from the config
    watch_config: bool = True
    redis_url: str | None = None  # shared state for several replicas (REDIS_URL); None: in-process
    keys_path: Path | None = None  # None: $ROUTER_GATEWAY_KEYS or keys.json beside the request log


class Gateway:
    """Owns the runtime and the long-lived services; the API handlers talk to it."""

    def __init__(self, options: GatewayOptions):
        self.options = options
        self.state = ExpertState()
        self.runtime: Runtime | None = None
        self.embedder: BatchingEmbedder | None = None
        self.request_log: RequestLog | None = None
        self.keys: KeyStore | None = None
        self.shared: SharedState | None = None
        self.limiter: LocalLimiter | SharedLimiter | None = None
        self.reload_error: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._version = 0
        self._reload_lock = asyncio.Lock()
        self.draining = False
        self.usage: UsageSettler | None = None  # per-key usage and holds settled as requests end
        #: metrics, traces, live view, request log lines (domain.record.RecordObserver)
        self.observers: list[RecordObserver] = []
        self.online = None  # OnlineLearner: feedback -> routers that learn online
        self.capacity = CapacityBook(inflight=self.state.inflight)  # engines' load (vLLM /metrics)
        self.pacer = BudgetPacer()  # budget pacing state per key
        self.spend: SpendView | None = None
        self.learning = None  # learning.service.LearningService when experts.yaml has a learning: section
        self.clients_in_flight = 0  # HTTP requests to the OpenAI endpoints, until their answer is sent (app.py)
        self.affinity = Affinity(AffinityStore())  # session pins outlive reloads; Redis once shared starts
        self.http = GetClient(options.connect)  # health checks and engine-metrics scrapes
        self.health = HealthChecker(self.state, self.http)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        from router_gateway.observability import (
            Observability,  # metrics, traces, live view, request log lines
        )
        self.observers.append(Observability(self))
        config = self.options.config or load_config(self.options.config_path)
        self.embedder = await self._make_embedder(config)
        self.runtime = self._build_runtime(config)
        settings = config.logging
        self.request_log = RequestLog(settings.path, settings.flush_interval_ms, settings.max_batch,
                                      settings.store_prompts)
        await self.request_log.start()
        self._apply_breaker(config)
        await self._start_access_control(config)
        poller = EnginePoller(self.capacity, self.shared, self.http)
        self._tasks.append(asyncio.create_task(
            poller.run(lambda: self.runtime.config.experts, lambda: self.runtime.config.server.metrics_poll_s),
            name="engine-metrics"))
        if self._health_interval() > 0:
            self._tasks.append(asyncio.create_task(
                self.health.run(lambda: self.runtime.config.experts, lambda: self._health_interval() or 5.0),
                name="health-checks"))
        # half-open breakers are probed by the gateway, never by requests (services.breaker_probe)
        self._tasks.append(asyncio.create_task(BreakerProber(self).run(), name="breaker-probes"))
        if self.options.watch_config and self.options.config_path:
            self._tasks.append(asyncio.create_task(self._watch_config(), name="config-watch"))
        from router_gateway.routing.online_learning import OnlineLearner
        self.online = OnlineLearner(self)
        self._tasks.append(asyncio.create_task(self.online.refresh_loop(), name="online-refresh"))
        if config.learning is not None:
            from router_gateway.learning.service import LearningService
            self.learning = LearningService(self, config)
            await self.learning.start()

    async def _start_access_control(self, config: GatewayConfig) -> None:
        """Keys, per-key limits and budgets, and the shared state that makes them hold across replicas."""
        keys_path = self.options.keys_path
        if keys_path is None:
            keys_path = os.environ.get("ROUTER_GATEWAY_KEYS") or Path(config.logging.path).parent / "keys.json"
        self.keys = KeyStore(keys_path)
        local = LocalLimiter()
        await asyncio.to_thread(local.seed_from_log, config.logging.path)
        self.shared = SharedState(self.options.redis_url, self.state)
        self.limiter = SharedLimiter(self.shared, local) if self.shared.enabled else local
        self.shared.limiter = self.limiter if self.shared.enabled else None
        self.spend = SpendView(self.limiter, self.shared)
        self.usage = UsageSettler(self.limiter)
        self.affinity.store.shared = self.shared
        await self.shared.start()

    def settle_usage(self, key: ApiKey, hold, tokens: int, cost: float) -> None:
        """The pipeline's end of a request with a key: state.usage_settlement does the work."""
        if self.usage is not None:
            self.usage.settle(key, hold, tokens, cost)

    def _apply_breaker(self, config: GatewayConfig) -> None:
        self.state.settings = BreakerSettings(config.server.breaker.failure_threshold,
                                              config.server.breaker.cooldown_s)

    def _health_interval(self) -> float:
        if self.options.health_interval_s is not None:
            return self.options.health_interval_s
        return self.runtime.config.server.health_interval_s if self.runtime else 0.0

    async def close(self) -> None:
        await stop_tasks(self._tasks, "gateway")
        if self.usage is not None:
            await self.usage.aclose()
        if self.learning:  # pending shadow work is dropped; every client answer was logged already
            await self.learning.close()
        await self.affinity.store.flush()
        if self.shared:
            await self.shared.close()
        if self.request_log:
            await self.request_log.close()
        if self.runtime:
            await self.runtime.forwarder.aclose()
        if self.embedder:
            await self.embedder.close()
        await self.http.aclose()

    async def _make_embedder(self, config: GatewayConfig) -> BatchingEmbedder:
        settings = config.embedder
        if self.options.embedder is not None:
            base = self.options.embedder
        else:
            from router_gateway.embedding.factory import make_embedder
            base = await asyncio.to_thread(make_embedder, settings.backend, model=settings.model,
                                           threads=settings.threads, url=settings.url,
                                           api_key=settings.api_key, dim=settings.dim)
            await asyncio.to_thread(base.embed, ["warm-up"])  # first call pays lazy init; not a request
        batcher = BatchingEmbedder(base, settings.max_batch, settings.max_wait_ms, settings.cache_size,
                                   on_batch=self.on_embed_batch)
        await batcher.start()
        return batcher

    def on_embed_batch(self, size: int) -> None:
        for observer in self.observers:
            observer.on_embed_batch(size)

    def on_score_batch(self, size: int) -> None:
        for observer in self.observers:
            observer.on_score_batch(size)

    def _build_runtime(self, config: GatewayConfig) -> Runtime:
        routers = build_router_set(config, self.embedder.info if self.embedder else None)
        self._version += 1
        routing = RoutingService(config, routers, self.embedder, self.state, self.capacity, self.affinity,
                                 on_score_batch=self.on_score_batch)
        forwarder = Forwarder(config, self.state, self.options.connect)
        return Runtime(self._version, config, routing, forwarder)

    # -- requests use a runtime for their whole life ---------------------------------------
    def acquire(self) -> Runtime:
        runtime = self.runtime
        assert runtime is not None
        runtime.active += 1
        return runtime

    def release(self, runtime: Runtime) -> None:
        runtime.active -= 1
        if runtime.retired and runtime.active == 0 and not runtime.closed.is_set():
            runtime.closed.set()
            asyncio.get_running_loop().create_task(runtime.forwarder.aclose())

    # -- reload ----------------------------------------------------------------------------
    async def reload(self) -> tuple[bool, str]:
        """Re-read the config file; on any error keep the running version and say why."""
        async with self._reload_lock:
            try:
                if self.options.config_path is None:
                    raise ConfigError("no config file to reload")
                config = await asyncio.to_thread(load_config, self.options.config_path)
                if self.learning is not None:  # the promoted router survives a reload
                    config = self.learning.on_reload(config)
                if config.embedder != self.runtime.config.embedder:
                    raise ConfigError("embedder settings changed: restart the gateway to apply them")
                new = await asyncio.to_thread(self._build_runtime, config)
            except (ConfigError, OSError) as exc:
                self.reload_error = str(exc)
                log.error("config reload refused, keeping version %s: %s", self.runtime.version, exc)
                return False, str(exc)
            self.reload_error = None
            return await self._swap(new)

    async def swap_config(self, change) -> tuple[bool, str]:
        """Hot-swap onto ``change(current config)`` (the learning loop's promotions); on error keep
        the running version."""
        async with self._reload_lock:
            try:
                new = await asyncio.to_thread(self._build_runtime, change(self.runtime.config))
            except (ConfigError, OSError, ValueError) as exc:
                log.error("swap refused, keeping version %s: %s", self.runtime.version, exc)
                return False, str(exc)
            return await self._swap(new)

    async def _swap(self, new: Runtime) -> tuple[bool, str]:
        old, self.runtime = self.runtime, new
        self._apply_breaker(new.config)
        old.retired = True
        if old.active == 0:
            old.closed.set()
            await old.forwarder.aclose()
        log.info("config version %s loaded (%d experts)", new.version, len(new.config.experts))
        return True, f"version {new.version} loaded"

    async def _watch_config(self) -> None:
        from watchfiles import awatch
        path = Path(self.options.config_path).resolve()
        async for changes in awatch(path.parent, debounce=300, step=100):
            if any(Path(p).resolve() == path for _, p in changes):
                await self.reload()

    def ready(self) -> tuple[bool, dict]:
        """Config loaded, embedder warm, at least one expert reachable."""
        runtime = self.runtime
        checks = {"config": runtime is not None, "embedder": self.embedder is not None,
                  "experts_reachable": []}
        if runtime:
            checks["experts_reachable"] = [n for n in runtime.config.experts if self.state.health(n) is None
                                           and n in self.state._health]
            checks["config_version"] = runtime.version
        if self.reload_error:
            checks["last_reload_error"] = self.reload_error
        if self.shared is not None:
            # a replica that lost Redis keeps serving on local state: degraded, still ready
            checks["shared_state"] = self.shared.status()
        keys_ok = True
        if self.keys is not None:
            # keys in use but the file unusable: every request is refused, so the replica is not ready
            required = self.keys.required
            keys_ok = self.keys.problem is None
            checks["keys"] = {"required": required, "ok": keys_ok,
                              **({"problem": self.keys.problem} if not keys_ok else {})}
        ok = (checks["config"] and checks["embedder"] and bool(checks["experts_reachable"]) and keys_ok
              and not self.draining)
        return ok, checks
