"""From engine samples to an expected queueing delay per expert.

Queueing delay by Little's law: a request that arrives behind ``waiting`` others waits about
``waiting / drain_rate`` seconds, where the drain rate is how many requests per second the engine
finishes while it is full. While requests wait, every slot is busy, so the drain rate is
``running / mean_service_s`` (mean service time from the latency histogram's sum and count between
two scrapes); when that is unknown, the measured rate of finished requests between the scrapes.

Between scrapes the gateway adds its own load: the growth of its in-flight count at that expert since
the scrape (every replica's, as far as it knows) joins the queue when the engine was already queueing
(it had no free slot then), so a burst does not herd onto an expert whose last scrape looked calm. An estimate older than
``stale_after_s`` is dropped: the expert falls back to today's behaviour (in-flight count only).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from router_gateway.capacity.engine_metrics import EngineSample


@dataclass(frozen=True)
class LoadEstimate:
    """What the router knows of an expert's engine, and the queueing delay it implies."""

    waiting: float
    running: float
    kv_usage: float | None
    drain_rate: float | None  # requests per second the engine finishes while saturated
    wait_s: float  # expected queueing delay for a request sent now (at the scrape)
    at: float  # wall-clock time of the scrape (comparable across replicas)

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def estimate(prev: EngineSample | None, cur: EngineSample, prev_rate: float | None = None,
             wall_time: float | None = None) -> LoadEstimate:
    """The load estimate from the current scrape and (for rates) the previous one."""
    rate = _service_rate(prev, cur) or _finish_rate(prev, cur)
    if rate is not None and prev_rate is not None:
        rate = 0.5 * rate + 0.5 * prev_rate  # smooth scrape-to-scrape noise
    rate = rate if rate is not None else prev_rate
    wait = cur.waiting / rate if cur.waiting > 0 and rate else 0.0
    if cur.waiting > 0 and not rate:
        wait = float(cur.waiting)  # queueing with no measurable drain yet: assume a second each
    return LoadEstimate(cur.waiting, cur.running, cur.kv_usage, rate, wait,
                        wall_time if wall_time is not None else time.time())


def _service_rate(prev: EngineSample | None, cur: EngineSample) -> float | None:
    """running / mean service time, from the latency histogram between two scrapes (or overall)."""
    if cur.running <= 0 or cur.service_sum is None or not cur.service_count:
        return None
    total, count = cur.service_sum, cur.service_count
    if prev is not None and prev.service_count is not None and cur.service_count > prev.service_count:
        total, count = cur.service_sum - (prev.service_sum or 0.0), cur.service_count - prev.service_count
    mean = total / count
    return cur.running / mean if mean > 0 else None


def _finish_rate(prev: EngineSample | None, cur: EngineSample) -> float | None:
    if prev is None or prev.finished is None or cur.finished is None or cur.at <= prev.at:
        return None
    done = cur.finished - prev.finished
    return done / (cur.at - prev.at) if done > 0 else None


class CapacityBook:
    """The latest estimate per expert, and the gateway's in-flight count when it was made."""

    def __init__(self, stale_after_s: float = 10.0, clock=time.time, inflight=None):
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.inflight = inflight or (lambda name: 0)  # the gateway's in-flight count per expert
        self._estimates: dict[str, LoadEstimate] = {}
        self._inflight_at: dict[str, int] = {}

    def put(self, expert: str, est: LoadEstimate) -> None:
        old = self._estimates.get(expert)
        if old is None or est.at >= old.at:
            self._estimates[expert] = est
            self._inflight_at[expert] = self.inflight(expert)

    def _added(self, expert: str) -> int:
        return max(0, self.inflight(expert) - self._inflight_at.get(expert, 0))

    def get(self, expert: str) -> LoadEstimate | None:
        est = self._estimates.get(expert)
        if est is None or self.clock() - est.at > self.stale_after_s:
            return None
        return est

    def known(self) -> set[str]:
        """Experts with a fresh estimate."""
        return {name for name in self._estimates if self.get(name) is not None}

    def expected_wait_s(self, expert: str) -> float:
        """Seconds a request sent now would queue at this expert (0 when unknown)."""
        est = self.get(expert)
        if est is None:
            return 0.0
        if est.waiting <= 0 or not est.drain_rate:
            return est.wait_s
        return (est.waiting + self._added(expert)) / est.drain_rate

    def snapshot(self) -> dict[str, dict]:
        out = {}
        for name in self._estimates:
            est = self.get(name)
            if est is not None:
                out[name] = {**est.as_dict(), "expected_wait_s": round(self.expected_wait_s(name), 4),
                             "added_since_scrape": self._added(name)}
        return out
