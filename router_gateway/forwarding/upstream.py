"""HTTP clients for calling experts, behind one small interface.

``Http1Upstream`` is the default: a lean keep-alive HTTP/1.1 client (services/http1_client.py). At
c=32 against a stub (eval/bench/client_compare.py) it costs 0.010 ms of CPU per request where aiohttp
costs 0.062 ms and httpx 1-3 ms (httpcore re-checks every pooled connection on each checkout).
``HttpxUpstream`` is used when a transport is injected: unit tests pass httpx's MockTransport so they
never touch the network.

Both raise ``UpstreamConnectError`` when no response arrived (refused, reset, stale connection)
and ``UpstreamBodyError`` when the body broke off: ``UpstreamBodyTimeout`` when it was still coming at
the deadline given to ``post`` (a stream that never ends is cut there), ``UpstreamBodyTooLarge`` when
``read(max_bytes)`` found it over the limit. The wait for the headers is the caller's (asyncio.timeout).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Protocol

import httpx

from router_gateway.domain.config import Expert
from router_gateway.forwarding.http1 import (
    BodyFailed,
    BodyTimedOut,
    BodyTooLarge,
    ConnectFailed,
    Http1Pool,
)

#: below uvicorn's (and so vLLM's) 5 s idle timeout, so a pooled connection is never reused
#: just as the server closes it
KEEPALIVE_S = 4.0


class UpstreamConnectError(Exception):
    """No response from the expert: connection refused, reset, or closed before the headers."""


class UpstreamBodyError(Exception):
    """The response body broke off after the headers."""


class UpstreamBodyTimeout(UpstreamBodyError):
    """The body was still coming at the deadline (or stalled past the read timeout)."""


class UpstreamBodyTooLarge(UpstreamBodyError):
    """The body is over the caller's ``max_bytes``."""


def _body_error(exc: BodyFailed) -> UpstreamBodyError:
    kind = UpstreamBodyTimeout if isinstance(exc, BodyTimedOut) else \
        UpstreamBodyTooLarge if isinstance(exc, BodyTooLarge) else UpstreamBodyError
    return kind(str(exc))


@dataclass
class UpstreamResponse:
    """Status after the headers; the body is read whole or streamed as raw chunks."""

    status: int
    chunks: AsyncIterator[bytes]
    _read: Callable[[int | None], Awaitable[bytes]]
    _close: Callable[[], Awaitable[None]]
    content_type: str = ""

    async def read(self, max_bytes: int | None = None) -> bytes:
        return await self._read(max_bytes)

    @property
    def is_event_stream(self) -> bool:
        return self.content_type.split(";", 1)[0].strip().lower() == "text/event-stream"

    async def close(self) -> None:
        try:
            await self._close()
        except Exception:  # closing a broken connection must not mask the real error
            pass


class Upstream(Protocol):
    """POST a JSON body to an expert path; returns once the response headers are in. The body must be
    complete by ``deadline`` (time.monotonic()), else ``UpstreamBodyTimeout``."""

    async def post(self, path: str, body: bytes, deadline: float | None = None) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


def make_upstream(expert: Expert, transport: httpx.AsyncBaseTransport | None = None) -> Upstream:
    return HttpxUpstream(expert, transport) if transport is not None else Http1Upstream(expert)


def _headers(expert: Expert) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if expert.api_key:
        headers["authorization"] = f"Bearer {expert.api_key}"
    return headers


class Http1Upstream:
    """The default: pooled keep-alive connections of http1_client, created on first use inside the loop."""

    def __init__(self, expert: Expert):
        self._expert = expert
        self._pool: Http1Pool | None = None

    def _get_pool(self) -> Http1Pool:
        if self._pool is None:
            e = self._expert
            self._pool = Http1Pool(e.base_url, _headers(e), limit=e.max_concurrency * 2,
                                   connect_timeout=e.timeout.connect, read_timeout=e.timeout.total,
                                   keepalive_s=KEEPALIVE_S)
        return self._pool

    async def post(self, path: str, body: bytes, deadline: float | None = None) -> UpstreamResponse:
        try:
            response = await self._get_pool().post(path, body, deadline)
        except ConnectFailed as exc:
            raise UpstreamConnectError(str(exc)) from None

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.chunks():
                    yield chunk
            except BodyFailed as exc:
                raise _body_error(exc) from None

        async def read(max_bytes: int | None) -> bytes:
            try:
                return await response.read(max_bytes)
            except BodyFailed as exc:
                raise _body_error(exc) from None

        async def close() -> None:
            response.release()

        return UpstreamResponse(response.status, chunks(), read, close, response.content_type)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()


class HttpxUpstream:
    """httpx client; used when a transport is injected (unit tests)."""

    def __init__(self, expert: Expert, transport: httpx.AsyncBaseTransport | None = None):
        limits = httpx.Limits(max_connections=expert.max_concurrency * 2,
                              max_keepalive_connections=expert.max_concurrency, keepalive_expiry=KEEPALIVE_S)
        timeout = httpx.Timeout(connect=expert.timeout.connect, read=expert.timeout.total,
                                write=expert.timeout.connect, pool=expert.timeout.connect)
        self._client = httpx.AsyncClient(base_url=expert.base_url, headers=_headers(expert), limits=limits,
                                         timeout=timeout, transport=transport)

    async def post(self, path: str, body: bytes, deadline: float | None = None) -> UpstreamResponse:
        request = self._client.build_request("POST", path, content=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise UpstreamConnectError(type(exc).__name__) from None
        raw = response.aiter_raw()

        async def next_chunk() -> bytes:
            try:
                async with asyncio.timeout(None if deadline is None else deadline - time.monotonic()):
                    return await anext(raw)
            except TimeoutError:
                raise UpstreamBodyTimeout("the body was still coming at the deadline") from None
            except httpx.TransportError as exc:
                raise UpstreamBodyError(type(exc).__name__) from None

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                try:
                    chunk = await next_chunk()
                except StopAsyncIteration:
                    return
                yield chunk

        async def read(max_bytes: int | None) -> bytes:  # whole, then checked: unit tests' bodies are small
            try:
                async with asyncio.timeout(None if deadline is None else deadline - time.monotonic()):
                    content = await response.aread()
            except TimeoutError:
                raise UpstreamBodyTimeout("the body was still coming at the deadline") from None
            except httpx.TransportError as exc:
                raise UpstreamBodyError(type(exc).__name__) from None
            if max_bytes is not None and len(content) > max_bytes:
                raise UpstreamBodyTooLarge(f"the body has {len(content)} bytes, over the limit of {max_bytes}")
            return content

        return UpstreamResponse(response.status_code, chunks(), read, response.aclose,
                                response.headers.get("content-type", ""))

    async def aclose(self) -> None:
        await self._client.aclose()
