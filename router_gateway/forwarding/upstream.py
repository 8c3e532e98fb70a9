"""The experts' side of the HTTP client: one pooled ``Http1Pool`` per expert, built from its config.

The client (router_gateway/http/http1.py) is a lean keep-alive HTTP/1.1 client: at c=32 against a stub
(eval/bench/client_compare.py) it costs 0.010 ms of CPU per request where aiohttp costs 0.062 ms and
httpx 1-3 ms (httpcore re-checks every pooled connection on each checkout). Production and unit tests
run this same client; only its connection factory differs (``connect``: real TCP/TLS by default, an
in-memory one in unit tests, router_gateway/http/memory.py).

Failures speak the client's one vocabulary (router_gateway/http/errors.py, re-exported here for the
forwarder): ``UpstreamConnectError`` when no response arrived (refused, reset, stale connection) and
``UpstreamBodyError`` when the body broke off: ``UpstreamBodyTimeout`` when it was still coming at the
deadline given to ``post`` (a stream that never ends is cut there), ``UpstreamBodyTooLarge`` when
``read(max_bytes)`` found it over the limit. The wait for the headers is the caller's (asyncio.timeout).
"""
from __future__ import annotations

from collections.abc import Awaitable

from router_gateway.domain.config import Expert
from router_gateway.http.errors import (
    UpstreamBodyError,
    UpstreamBodyTimeout,
    UpstreamBodyTooLarge,
    UpstreamConnectError,
)
from router_gateway.http.http1 import KEEPALIVE_S, Connector, Http1Pool
from router_gateway.http.http1 import Response as UpstreamResponse

__all__ = [
    "Http1Upstream",
    "UpstreamBodyError",
    "UpstreamBodyTimeout",
    "UpstreamBodyTooLarge",
    "UpstreamConnectError",
    "UpstreamResponse",
    "make_upstream",
]


def make_upstream(expert: Expert, connect: Connector | None = None) -> Http1Upstream:
    return Http1Upstream(expert, connect)


def _headers(expert: Expert) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if expert.api_key:
        headers["authorization"] = f"Bearer {expert.api_key}"
    return headers


class Http1Upstream:
    """One expert's pool, created on first use (a config version may list experts it never calls)."""

    def __init__(self, expert: Expert, connect: Connector | None = None):
        self._expert = expert
        self._connect = connect
        self._pool: Http1Pool | None = None

    def _get_pool(self) -> Http1Pool:
        if self._pool is None:
            e = self._expert
            self._pool = Http1Pool(e.base_url, _headers(e), limit=e.max_concurrency * 2,
                                   connect_timeout=e.timeout.connect, read_timeout=e.timeout.total,
                                   keepalive_s=KEEPALIVE_S, connect=self._connect)
        return self._pool

    def post(self, path: str, body: bytes, deadline: float | None = None) -> Awaitable[UpstreamResponse]:
        """POST a JSON body to an expert path; returns once the response headers are in. The body must
        be complete by ``deadline`` (time.monotonic()), else ``UpstreamBodyTimeout``."""
        return self._get_pool().request("POST", path, body, deadline)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
