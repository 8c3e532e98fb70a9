"""Per-expert health and load: circuit breaker, in-flight counts, active health-check results.

In-process by default. The same interface is backed by Redis (services.shared_state) when several
gateway replicas must agree. Routing asks ``unavailable_reason`` and ``load_penalty``; forwarding
calls ``acquire``/``release`` and ``record_success``/``record_failure``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from router_gateway.config import Expert

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class BreakerSettings:
    """Consecutive failures that open the circuit, and how long it stays open before a probe."""

    failure_threshold: int = 3
    cooldown_s: float = 10.0


@dataclass
class _Breaker:
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probe_in_flight: bool = False
    probe_started: float = 0.0
    last_error: str = ""
    updated: float = 0.0  # wall-clock time of the last open/close, to merge with other replicas


@dataclass
class ExpertState:
    """In-process health and load tracker for every expert."""

    settings: BreakerSettings = field(default_factory=BreakerSettings)
    clock: callable = time.monotonic  # injectable for tests
    _breakers: dict[str, _Breaker] = field(default_factory=dict)
    _inflight: dict[str, int] = field(default_factory=dict)
    _health: dict[str, str | None] = field(default_factory=dict)  # expert -> failure reason or None
    _remote_inflight: dict[str, int] = field(default_factory=dict)  # other replicas' counts (Redis)
    _changes: dict[str, dict] = field(default_factory=dict)  # transitions not yet published

    # -- load ------------------------------------------------------------------------------
    def acquire(self, name: str) -> None:
        self._inflight[name] = self._inflight.get(name, 0) + 1

    def release(self, name: str) -> None:
        self._inflight[name] = max(0, self._inflight.get(name, 0) - 1)

    def inflight(self, name: str) -> int:
        """Requests in flight to this expert from every replica (ours now, others' as last synced)."""
        return self._inflight.get(name, 0) + self._remote_inflight.get(name, 0)

    def local_inflight(self) -> dict[str, int]:
        return {n: c for n, c in self._inflight.items() if c}

    def set_remote_inflight(self, counts: dict[str, int]) -> None:
        self._remote_inflight = counts

    def load_penalty(self, name: str, config: Expert) -> float:
        """A small utility penalty growing with load, so ties go to the less busy expert."""
        share = self.inflight(name) / config.max_concurrency
        return 0.05 * share * share

    # -- circuit breaker -------------------------------------------------------------------
    def _breaker(self, name: str) -> _Breaker:
        return self._breakers.setdefault(name, _Breaker())

    def circuit(self, name: str) -> str:
        b = self._breaker(name)
        if b.state == OPEN and self.clock() - b.opened_at >= self.settings.cooldown_s:
            b.state, b.probe_in_flight = HALF_OPEN, False
        return b.state

    def record_success(self, name: str) -> None:
        b = self._breaker(name)
        was = b.state
        b.state, b.failures, b.probe_in_flight, b.last_error = CLOSED, 0, False, ""
        if was != CLOSED:
            self._changed(name, b)

    def record_failure(self, name: str, reason: str) -> None:
        b = self._breaker(name)
        b.failures += 1
        b.last_error = reason
        if b.state == HALF_OPEN or b.failures >= self.settings.failure_threshold:
            b.state, b.opened_at, b.probe_in_flight = OPEN, self.clock(), False
            self._changed(name, b)

    # -- sharing with other replicas (services.shared_state) -------------------------------
    def _changed(self, name: str, b: _Breaker) -> None:
        b.updated = time.time()
        opened_wall = b.updated - (self.clock() - b.opened_at) if b.state == OPEN else 0.0
        self._changes[name] = {"state": b.state, "opened_wall": opened_wall, "failures": b.failures,
                               "last_error": b.last_error, "updated": b.updated}

    def take_changes(self) -> dict[str, dict]:
        changes, self._changes = self._changes, {}
        return changes

    def apply_remote(self, name: str, data: dict) -> None:
        """Adopt another replica's breaker transition if it is newer than ours."""
        b = self._breaker(name)
        if data.get("updated", 0.0) <= b.updated:
            return
        b.updated, b.failures, b.last_error = data["updated"], data.get("failures", 0), data.get("last_error", "")
        if data.get("state") == OPEN:
            b.state, b.probe_in_flight = OPEN, False
            b.opened_at = self.clock() - max(0.0, time.time() - data.get("opened_wall", b.updated))
        else:
            b.state, b.failures, b.probe_in_flight = CLOSED, 0, False

    # -- active health ---------------------------------------------------------------------
    def set_health(self, name: str, failure: str | None) -> None:
        self._health[name] = failure

    def health(self, name: str) -> str | None:
        return self._health.get(name)

    # -- the question routing asks ---------------------------------------------------------
    def unavailable_reason(self, name: str, config: Expert) -> str | None:
        state = self.circuit(name)
        if state == OPEN:
            return f"circuit open after {self._breaker(name).failures} failures ({self._breaker(name).last_error})"
        if state == HALF_OPEN:
            b = self._breaker(name)
            # a probe reservation that was never used (expert ranked but not called) expires
            if b.probe_in_flight and self.clock() - b.probe_started < self.settings.cooldown_s:
                return "circuit half-open, probe in flight"
            b.probe_in_flight, b.probe_started = True, self.clock()  # this request is the probe
        if self._health.get(name):
            return f"health check failing: {self._health[name]}"
        if self.inflight(name) >= config.max_concurrency:
            return f"saturated ({self.inflight(name)}/{config.max_concurrency} in flight)"
        return None

    def snapshot(self) -> dict[str, dict]:
        names = set(self._breakers) | set(self._inflight) | set(self._health)
        names |= set(self._remote_inflight)
        return {n: {"circuit": self.circuit(n), "inflight": self.inflight(n),
                    "health": self._health.get(n) or "ok"} for n in sorted(names)}
