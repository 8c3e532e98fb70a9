"""``shadow.usd_per_day`` across replicas: one counter per UTC day in Redis, reserved atomically.

Each replica's ShadowBudget (learning.budget) enforces the cap on its own spend, so N replicas that
share Redis would spend up to N times the cap. With Redis the cap is also held here, for all of them:
a shadow job reserves its estimate on ``<prefix>learning:shadow_usd:<day>`` with one Lua script (read,
compare with the cap, add: no two replicas can both take the last dollar) and settles it with what it
really spent. The key expires two days after its day began, so nothing accumulates.

Failure policy: when Redis cannot be reached the reservation is refused (the job is skipped and
counted): shadow work is optional, and spending blind could break the operator's cap. A settle that
fails leaves the reservation standing, which errs towards spending less. A job is booked on the day
it reserved on, even if it ends after midnight.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from router_gateway.learning.store import day_of

log = logging.getLogger("router_gateway.learning")

#: KEYS[1] the day's counter; ARGV: amount, cap, ttl seconds. 1 when reserved, 0 when it would exceed.
RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
if spent + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
TTL_S = 2 * 86400


class SharedDayCap:
    """The day's shadow spend of every replica, against ``usd_per_day`` (see module doc)."""

    def __init__(self, redis: Callable[[], Any], prefix: str, usd_per_day: float,
                 clock: Callable[[], float] = time.time):
        self._redis = redis  # returns the shared client, or None while Redis is down
        self.prefix = prefix
        self.usd_per_day = float(usd_per_day)
        self.clock = clock
        self.refused = 0
        self.unreachable = 0

    def key(self, day: str | None = None) -> str:
        return f"{self.prefix}learning:shadow_usd:{day or day_of(self.clock())}"

    async def reserve(self, usd: float) -> str | None:
        """Reserve ``usd`` on today's counter; returns the day to settle on, None when refused."""
        day = day_of(self.clock())
        redis = self._redis()
        try:
            if redis is None:
                raise ConnectionError("redis is not connected")
            ok = await redis.eval(RESERVE, 1, self.key(day), repr(float(usd)), repr(self.usd_per_day), TTL_S)
        except Exception as exc:  # noqa: BLE001 - any failure refuses: see the module doc
            self.unreachable += 1
            log.warning("shared shadow budget unreachable, shadow job skipped: %s", exc)
            return None
        if int(ok) != 1:
            self.refused += 1
            return None
        return day

    async def settle(self, day: str, reserved: float, spent: float) -> None:
        """Replace the reservation by what was spent (on the day it was reserved on)."""
        delta = float(spent) - float(reserved)
        if delta == 0.0:
            return
        redis = self._redis()
        try:
            if redis is None:
                raise ConnectionError("redis is not connected")
            await redis.incrbyfloat(self.key(day), delta)
        except Exception as exc:  # noqa: BLE001 - the reservation stands: errs towards spending less
            log.warning("could not settle the shared shadow budget (%+.6f USD): %s", delta, exc)

    async def today_usd(self) -> float | None:
        """Every replica's shadow spend (and reservations) today; None when Redis cannot be read."""
        redis = self._redis()
        try:
            value = await redis.get(self.key()) if redis is not None else None
        except Exception:  # noqa: BLE001 - status only
            return None
        return float(value) if value is not None else 0.0
