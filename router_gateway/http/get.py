"""GETs to any URL over the forwarding client's pools: the gateway's health checks and engine-metrics
scrapes. One ``Http1Pool`` per origin, made on first use with the same connection factory as the
forwarder, so the unit tests' in-memory connection serves these too and every failure speaks
``http.errors``. They have pools of their own rather than the forwarder's: a health check must not
wait for a slot behind a saturated expert's requests (it would then report a busy expert as down).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from router_gateway.http.errors import UpstreamConnectError
from router_gateway.http.http1 import KEEPALIVE_S, Connector, Http1Pool

#: a scrape or check never needs more connections to one origin (each runs once per interval)
LIMIT_PER_ORIGIN = 4


@dataclass
class Fetched:
    status: int
    body: bytes  # empty when the body was not asked for


class GetClient:
    """``get(url)`` with a ``timeout_s`` per step (connect, the response headers, each body read)."""

    def __init__(self, connect: Connector | None = None, timeout_s: float = 2.0):
        self._connect = connect
        self.timeout_s = timeout_s
        self._pools: dict[str, Http1Pool] = {}

    def _pool(self, origin: str) -> Http1Pool:
        pool = self._pools.get(origin)
        if pool is None:
            pool = Http1Pool(origin, {}, limit=LIMIT_PER_ORIGIN, connect_timeout=self.timeout_s,
                             read_timeout=self.timeout_s, keepalive_s=KEEPALIVE_S, connect=self._connect)
            self._pools[origin] = pool
        return pool

    async def get(self, url: str, headers: dict[str, str] | None = None, read_body: bool = True,
                  max_bytes: int | None = None) -> Fetched:
        """The status, and the body when ``read_body`` (``UpstreamBodyTooLarge`` beyond ``max_bytes``).
        Raises ``UpstreamConnectError`` if no response headers came within the timeout."""
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        pool = self._pool(f"{parts.scheme}://{parts.netloc}")
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await pool.request("GET", path, headers=headers)
        except TimeoutError:
            raise UpstreamConnectError(f"no response within {self.timeout_s} s") from None
        try:
            # an unread body closes the connection instead of pooling it: a check never waits on one
            body = await response.read(max_bytes) if read_body else b""
        finally:
            response.release()
        return Fetched(response.status, body)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(pool.aclose() for pool in pools), return_exceptions=True)
