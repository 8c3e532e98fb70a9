"""The shadow budget: what shadow answers and grades may still spend.

Two limits, both hard: ``usd_per_day`` (per UTC day) and ``max_share`` (cumulative shadow spend never
above that share of cumulative live spend, so a quiet gateway also shadows little). Spend is
reserved before the calls are made (``reserve``) and settled with what they really cost
(``settle``), so concurrent shadow jobs cannot overshoot together.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from router_gateway.learning.store import day_of


@dataclass
class ShadowBudget:
    max_share: float
    usd_per_day: float
    clock: Callable[[], float] = time.time
    live_usd: float = 0.0
    shadow_usd: float = 0.0
    reserved_usd: float = 0.0
    day: str = ""
    day_usd: float = 0.0
    dropped: int = field(default=0)

    def _roll(self) -> None:
        today = day_of(self.clock())
        if today != self.day:
            self.day, self.day_usd = today, 0.0

    def add_live(self, usd: float) -> None:
        self.live_usd += max(0.0, usd)

    def available(self) -> float:
        """USD that may still be committed now."""
        self._roll()
        by_share = self.max_share * self.live_usd - self.shadow_usd - self.reserved_usd
        by_day = self.usd_per_day - self.day_usd - self.reserved_usd
        return max(0.0, min(by_share, by_day))

    def reserve(self, usd: float) -> bool:
        if usd > self.available():
            self.dropped += 1
            return False
        self.reserved_usd += usd
        return True

    def settle(self, reserved: float, spent: float) -> None:
        """Release a reservation and book what was really spent (it may differ from the estimate)."""
        self._roll()
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)
        self.shadow_usd += spent
        self.day_usd += spent

    def share(self) -> float | None:
        return self.shadow_usd / self.live_usd if self.live_usd > 0 else None
