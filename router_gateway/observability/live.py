"""In-memory aggregates behind the live view (``GET /ui/data``): a ring of recent records, per-minute
buckets (traffic per expert, latency samples, cost) and per-hour cost buckets.

Per process: with several workers each keeps its own, and ``/ui/data`` shows the worker that answered
(its pid is in the payload). ``on_record`` appends to bounded structures only: no sorting, no I/O; the
percentiles are computed when the page asks.
"""
from __future__ import annotations

import os
import random
import time
from collections import OrderedDict, deque
from typing import Any

from router_gateway.domain.record import RequestRecord

RECENT_FIELDS = ("request_id", "ts", "model", "profile", "router", "chosen_expert", "status", "error", "latency_ms",
                 "ttft_ms", "embed_ms", "route_ms", "cost_usd", "prompt_tokens", "completion_tokens",
                 "candidates", "ineligible", "attempts", "explored", "stream", "key_id", "cost_weight", "pacing")


class _Minute:
    """One minute of traffic."""

    __slots__ = ("by_expert", "errors", "cost", "latencies", "seen")
    SAMPLES = 2000  # latency samples kept per minute (reservoir beyond that)

    def __init__(self) -> None:
        self.by_expert: dict[str, int] = {}
        self.errors = 0
        self.cost = 0.0
        self.latencies: list[float] = []
        self.seen = 0

    def add(self, expert: str, status: int, cost: float, latency: float | None) -> None:
        self.by_expert[expert] = self.by_expert.get(expert, 0) + 1
        self.errors += status >= 400
        self.cost += cost
        if latency is None:
            return
        self.seen += 1
        if len(self.latencies) < self.SAMPLES:
            self.latencies.append(latency)
        else:  # reservoir sampling keeps an unbiased sample of a busy minute
            j = random.randrange(self.seen)
            if j < self.SAMPLES:
                self.latencies[j] = latency


def percentiles(values: list[float], qs=(50, 95, 99)) -> dict[str, float | None]:
    """Nearest-rank percentiles; None when there are no values."""
    if not values:
        return {f"p{q}": None for q in qs}
    ordered = sorted(values)
    n = len(ordered)
    return {f"p{q}": round(ordered[min(n - 1, max(0, int(q / 100 * n + 0.999999) - 1))], 3) for q in qs}


class LiveView:
    """Bounded aggregates of recent traffic for the UI."""

    def __init__(self, recent: int = 200, minutes: int = 60, hours: int = 24, clock=time.time):
        self.recent: deque[dict] = deque(maxlen=recent)
        self.minutes: OrderedDict[int, _Minute] = OrderedDict()
        self.hours: OrderedDict[int, list[float]] = OrderedDict()  # hour -> [cost, requests]
        self.keep_minutes, self.keep_hours = minutes, hours
        self.clock = clock
        self.embed_batches = 0
        self.embedded = 0
        self.score_batches = 0
        self.scored = 0
        self.total = 0

    def on_record(self, record: RequestRecord) -> None:
        recent = {k: getattr(record, k) for k in RECENT_FIELDS}
        recent["attempts"] = [a.as_dict() for a in record.attempts]  # the page gets JSON
        self.recent.append(recent)
        self.total += 1
        ts = record.ts or self.clock()
        cost = record.cost_usd or 0.0
        minute = int(ts // 60)
        bucket = self.minutes.get(minute)
        if bucket is None:
            bucket = self.minutes[minute] = _Minute()
            while len(self.minutes) > self.keep_minutes:
                self.minutes.popitem(last=False)
        bucket.add(record.chosen_expert or "(none)", int(record.status or 0), cost, record.latency_ms)
        hour = int(ts // 3600)
        hb = self.hours.get(hour)
        if hb is None:
            hb = self.hours[hour] = [0.0, 0]
            while len(self.hours) > self.keep_hours:
                self.hours.popitem(last=False)
        hb[0] += cost
        hb[1] += 1

    def on_embed_batch(self, size: int) -> None:
        self.embed_batches += 1
        self.embedded += size

    def on_score_batch(self, size: int) -> None:
        self.score_batches += 1
        self.scored += size

    def data(self) -> dict[str, Any]:
        """What the page draws: per-minute series, hourly cost, percentiles and the recent decisions."""
        now = self.clock()
        first_minute = int(now // 60) - self.keep_minutes + 1
        minutes = []
        for m, b in self.minutes.items():
            if m < first_minute:
                continue
            minutes.append({"t": m * 60, "count": sum(b.by_expert.values()), "by_expert": dict(b.by_expert),
                            "errors": b.errors, "cost_usd": round(b.cost, 8), **percentiles(b.latencies)})
        hours = [{"t": h * 3600, "cost_usd": round(c, 8), "count": n} for h, (c, n) in self.hours.items()]
        recent_lat = [r["latency_ms"] for r in self.recent if r.get("latency_ms") is not None]
        experts = sorted({e for b in self.minutes.values() for e in b.by_expert})
        return {"now": now, "pid": os.getpid(), "total_requests": self.total, "experts_seen": experts,
                "minutes": minutes, "hours": hours, "latency_recent": percentiles(recent_lat),
                "embed": {"batches": self.embed_batches, "prompts": self.embedded},
                "score": {"batches": self.score_batches, "prompts": self.scored},
                "recent": list(reversed(self.recent))}
