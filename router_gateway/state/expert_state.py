"""Per-expert health and load: circuit breaker, in-flight counts, active health-check results.

In-process by default. The same interface is backed by Redis (services.shared_state) when several
gateway replicas must agree. Routing asks ``unavailable_reason`` and ``load_penalty``; forwarding
calls ``acquire``/``release`` and ``record_success``/``record_failure``.

Each expert has two breakers: one for plain calls and one for streams. An expert whose streams
break while its plain calls succeed would otherwise never reach the failure threshold (each plain
success resets the count) and keep failing streams it cannot fail over once bytes were sent; with a
breaker per mode its streams go elsewhere while its plain path keeps serving. An unreachable expert
(connect error) fails in both modes at once. An open plain breaker bars streams too.

A breaker that has cooled down is half-open: no request is sent to it until the health loop's probe
(services.breaker_probe) succeeds, so ranking an expert, or explaining a ranking on ``/v1/route``,
never changes its breaker.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from router_gateway.domain.config import Expert

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
PLAIN, STREAM = "plain", "stream"  # breaker modes
#: failures that say nothing about the mode: the expert could not be reached at all
MODE_INDEPENDENT = ("connect_error",)


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
    probe_in_flight: bool = False  # the health loop is probing it (see claim_probe)
    last_error: str = ""
    updated: float = 0.0  # wall-clock time of the last open/close, to merge with other replicas


_CLOSED = _Breaker()  # what an expert without failures reads as; never written


@dataclass
class ExpertState:
    """In-process health and load tracker for every expert."""

    settings: BreakerSettings = field(default_factory=BreakerSettings)
    clock: callable = time.monotonic  # injectable for tests
    _breakers: dict[tuple[str, str], _Breaker] = field(default_factory=dict)
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

    # -- circuit breaker (one per expert and mode; see the module docstring) -----------------
    def _breaker(self, name: str, stream: bool = False) -> _Breaker:
        return self._breakers.setdefault((name, STREAM if stream else PLAIN), _Breaker())

    def _peek(self, name: str, stream: bool) -> _Breaker:
        """The breaker, without creating one: reading state never writes it."""
        return self._breakers.get((name, STREAM if stream else PLAIN)) or _CLOSED

    def circuit(self, name: str, stream: bool = False) -> str:
        """closed, open, or half_open (cooled down: waiting for the health loop's probe)."""
        b = self._peek(name, stream)
        if b.state == OPEN and self.clock() - b.opened_at >= self.settings.cooldown_s:
            return HALF_OPEN
        return b.state

    def record_success(self, name: str, stream: bool = False) -> None:
        key = (name, STREAM if stream else PLAIN)
        b = self._breaker(name, stream)
        was = b.state
        b.state, b.failures, b.last_error = CLOSED, 0, ""
        if was != CLOSED:
            self._changed(key, b)

    def record_failure(self, name: str, reason: str, stream: bool = False) -> None:
        """A failure the expert caused. An unreachable expert fails in both modes; any other failure
        counts in the mode it happened in only."""
        modes = (PLAIN, STREAM) if reason in MODE_INDEPENDENT else (STREAM if stream else PLAIN,)
        for mode in modes:
            b = self._breaker(name, mode == STREAM)
            b.failures += 1
            b.last_error = reason
            if self.circuit(name, mode == STREAM) == HALF_OPEN or b.failures >= self.settings.failure_threshold:
                b.state, b.opened_at = OPEN, self.clock()
                self._changed((name, mode), b)

    def claim_probe(self, name: str, stream: bool = False) -> bool:
        """For the health loop only: True (and the probe is ours) if the breaker is half-open and no
        probe is running. Requests and /v1/route never probe: asking them changes nothing."""
        if self.circuit(name, stream) != HALF_OPEN or self._peek(name, stream).probe_in_flight:
            return False
        self._breaker(name, stream).probe_in_flight = True
        return True

    def end_probe(self, name: str, stream: bool = False) -> None:
        """The probe finished (its outcome was recorded by forwarding) or was abandoned."""
        b = self._breakers.get((name, STREAM if stream else PLAIN))
        if b is not None:
            b.probe_in_flight = False

    # -- sharing with other replicas (services.shared_state) -------------------------------
    def _changed(self, key: tuple[str, str], b: _Breaker) -> None:
        b.updated = time.time()
        opened_wall = b.updated - (self.clock() - b.opened_at) if b.state == OPEN else 0.0
        self._changes[_shared_key(key)] = {"state": b.state, "opened_wall": opened_wall,
                                           "failures": b.failures, "last_error": b.last_error,
                                           "updated": b.updated}

    def take_changes(self) -> dict[str, dict]:
        changes, self._changes = self._changes, {}
        return changes

    def apply_remote(self, shared_key: str, data: dict) -> None:
        """Adopt another replica's breaker transition if it is newer than ours."""
        name, mode = _parse_shared_key(shared_key)
        b = self._breaker(name, mode == STREAM)
        if data.get("updated", 0.0) <= b.updated:
            return
        b.updated, b.failures, b.last_error = data["updated"], data.get("failures", 0), data.get("last_error", "")
        if data.get("state") == OPEN:
            b.state = OPEN
            b.opened_at = self.clock() - max(0.0, time.time() - data.get("opened_wall", b.updated))
        else:
            b.state, b.failures = CLOSED, 0

    # -- active health ---------------------------------------------------------------------
    def set_health(self, name: str, failure: str | None) -> None:
        self._health[name] = failure

    def health(self, name: str) -> str | None:
        return self._health.get(name)

    # -- the question routing asks ---------------------------------------------------------
    def unavailable_reason(self, name: str, config: Expert, stream: bool = False) -> str | None:
        """Why this expert cannot take a request (of this mode) now; None if it can. No side effects.
        The plain circuit is the expert's: open, it bars streams too; the stream circuit bars streams."""
        why = self._circuit_reason(name, stream=False)
        if why is None and stream:
            why = self._circuit_reason(name, stream=True)
        if why:
            return why
        if self._health.get(name):
            return f"health check failing: {self._health[name]}"
        if self.inflight(name) >= config.max_concurrency:
            return f"saturated ({self.inflight(name)}/{config.max_concurrency} in flight)"
        return None

    def _circuit_reason(self, name: str, stream: bool) -> str | None:
        state, label = self.circuit(name, stream), "stream circuit" if stream else "circuit"
        if state == OPEN:
            b = self._peek(name, stream)
            return f"{label} open after {b.failures} failures ({b.last_error})"
        if state == HALF_OPEN:
            return f"{label} half-open, waiting for the health loop's probe"
        return None

    def snapshot(self) -> dict[str, dict]:
        names = {n for n, _ in self._breakers} | set(self._inflight) | set(self._health)
        names |= set(self._remote_inflight)
        return {n: {"circuit": self.circuit(n), "stream_circuit": self.circuit(n, stream=True),
                    "inflight": self.inflight(n), "health": self._health.get(n) or "ok"} for n in sorted(names)}


def _shared_key(key: tuple[str, str]) -> str:
    """The plain breaker is shared under the expert's name, the stream breaker under name#stream
    ('#' cannot occur in an expert name)."""
    name, mode = key
    return name if mode == PLAIN else f"{name}#{mode}"


def _parse_shared_key(shared_key: str) -> tuple[str, str]:
    name, _, mode = shared_key.partition("#")
    return name, mode or PLAIN
