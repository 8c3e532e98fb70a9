"""Active health checks: each expert's health URL, on an interval, into ExpertState (routing skips
an expert whose last check failed; /ready needs at least one that passed)."""
from __future__ import annotations

import asyncio
from typing import Callable, Mapping

from router_gateway.domain.config import Expert
from router_gateway.http.errors import UpstreamTransportError
from router_gateway.http.get import GetClient
from router_gateway.state.expert_state import ExpertState

#: the whole check is bounded, not just each step (connect, headers)
CHECK_TIMEOUT_S = 4.0


class HealthChecker:
    """Checks every expert of the current config, then waits ``interval()`` seconds, until cancelled."""

    def __init__(self, state: ExpertState, http: GetClient):
        self.state = state
        self.http = http

    async def run(self, experts: Callable[[], Mapping[str, Expert]], interval: Callable[[], float]) -> None:
        while True:
            await asyncio.gather(*(self.check(name, e) for name, e in experts().items()))
            await asyncio.sleep(interval())

    async def check(self, name: str, expert: Expert) -> None:
        headers = {"authorization": f"Bearer {expert.api_key}"} if expert.api_key else None
        try:
            # only the status counts: the body is never read (an endless or huge one cannot hold the check)
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                fetched = await self.http.get(expert.base_url + expert.health_path, headers, read_body=False)
            self.state.set_health(name, None if fetched.status < 500 else f"HTTP {fetched.status}")
        except TimeoutError:
            self.state.set_health(name, "health check timed out")
        except (UpstreamTransportError, ValueError) as exc:  # ValueError: a URL the client cannot use
            self.state.set_health(name, str(exc) or type(exc).__name__)
