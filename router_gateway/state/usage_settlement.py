"""Settling a finished request against its key: the hold it took at admission is replaced by what it
used (tokens, USD). With Redis the settlement runs off the request path; close() waits for it."""
from __future__ import annotations

import asyncio
import math

from router_gateway.state.holds import Hold
from router_gateway.state.keys import ApiKey
from router_gateway.state.limits import LocalLimiter, SharedLimiter


class UsageSettler:
    def __init__(self, limiter: LocalLimiter | SharedLimiter):
        self.limiter = limiter
        self._tasks: set[asyncio.Task] = set()

    def settle(self, key: ApiKey, hold: Hold | None, tokens: int, cost: float) -> None:
        """Called once per request whatever its end; a second call for the same hold does nothing."""
        if hold is not None:
            if hold.settled:
                return
            hold.settled = True
        # usage is clamped upstream of here (forwarding.usage); this keeps a credit out whatever the caller
        tokens = max(0, int(tokens))
        cost = cost if math.isfinite(cost) and cost > 0 else 0.0
        if isinstance(self.limiter, SharedLimiter):
            task = asyncio.get_running_loop().create_task(self.limiter.settle(key, hold, tokens, cost))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.limiter.release(key.id, hold)
            self.limiter.add(key.id, tokens, cost)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
