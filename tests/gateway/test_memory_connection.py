"""The unit tests' seam: the in-memory connection (router_gateway/http/memory.py) under the production
HTTP client. A handler's ``httpx.Response`` becomes HTTP/1.1 bytes that the client's own parser,
pool, timeouts, limits and back-pressure handle, as they would from a socket (test_http1_client.py
checks the same client against real loopback servers)."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from router_gateway.http.errors import (
    UpstreamBodyError,
    UpstreamBodyTimeout,
    UpstreamBodyTooLarge,
    UpstreamConnectError,
)
from router_gateway.http.http1 import HIGH_WATER, Http1Pool
from router_gateway.http.memory import InMemoryConnector
from tests.support.slow_reader import read_slowly

BODY = b'{"model": "m", "messages": []}'


def pool(connector: InMemoryConnector, **kw) -> Http1Pool:
    args = {"limit": 8, "connect_timeout": 2.0, "read_timeout": 5.0, "keepalive_s": 4.0, **kw}
    return Http1Pool("http://expert.test:8000/v1", {"content-type": "application/json",
                                                    "authorization": "Bearer k"}, connect=connector, **args)


async def post_read(client: Http1Pool, **kw) -> tuple[int, bytes]:
    response = await client.post("/chat/completions", BODY)
    try:
        return response.status, await response.read(**kw)
    finally:
        response.release()


async def test_the_handler_sees_the_request_and_the_connection_is_kept_alive():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    connector = InMemoryConnector(handler)
    client = pool(connector)
    for _ in range(3):
        assert await post_read(client) == (200, b'{"ok":true}')
    await client.aclose()
    assert connector.connections == 1  # the pool reused its keep-alive connection
    request = seen[0]
    assert (request.method, str(request.url)) == ("POST", "http://expert.test:8000/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer k" and request.content == BODY


async def test_a_streamed_body_reaches_the_client_piece_by_piece():
    release = asyncio.Event()

    async def pieces():
        yield b"data: first\n\n"
        await release.wait()  # the client must see the first piece before the rest exists
        yield b"data: second\n\n"

    connector = InMemoryConnector(lambda r: httpx.Response(200, content=pieces(),
                                                           headers={"content-type": "text/event-stream"}))
    client = pool(connector)
    response = await client.post("/chat/completions", BODY)
    assert response.is_event_stream
    chunks = response.chunks()
    assert await asyncio.wait_for(chunks.__anext__(), 2) == b"data: first\n\n"
    release.set()
    assert [c async for c in chunks] == [b"data: second\n\n"]
    response.release()
    assert await post_read(client) is not None and connector.connections == 1  # chunked end: reusable
    await client.aclose()


async def test_a_connect_error_before_the_headers_and_a_broken_body_after_them():
    async def broken():
        yield b"part"
        raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        if b"down" in request.content:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(200, content=broken())

    client = pool(InMemoryConnector(handler))
    with pytest.raises(UpstreamConnectError, match="connection refused"):
        await client.post("/chat/completions", b'{"model": "down"}')
    response = await client.post("/chat/completions", BODY)
    chunks = response.chunks()
    assert await chunks.__anext__() == b"part"
    with pytest.raises(UpstreamBodyError):
        await chunks.__anext__()
    response.release()
    await client.aclose()


async def test_the_read_timeout_and_the_deadline_apply():
    async def stall():
        yield b"hi"
        await asyncio.sleep(5)

    async def endless():
        while True:
            yield b"data: x\n\n"
            await asyncio.sleep(0.02)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stall() if b"stall" in request.content else endless())

    client = pool(InMemoryConnector(handler), read_timeout=0.3)
    response = await client.post("/chat/completions", b"stall")
    chunks = response.chunks()
    assert await chunks.__anext__() == b"hi"
    with pytest.raises(UpstreamBodyTimeout, match="read timeout"):
        await chunks.__anext__()
    response.release()
    # data every 20 ms never trips the idle timeout: the deadline ends it anyway
    response = await client.post("/chat/completions", b"endless", deadline=time.monotonic() + 0.4)
    received = 0
    with pytest.raises(UpstreamBodyTimeout, match="deadline"):
        async for _ in response.chunks():
            received += 1
    assert received > 3
    response.release()
    await client.aclose()


async def test_a_body_over_the_limit_is_refused_and_its_connection_dropped():
    big = b"x" * 300_000

    def handler(request: httpx.Request) -> httpx.Response:
        if b"chunked" in request.content:
            return httpx.Response(200, stream=httpx.ByteStream(big))  # no length: sent chunked
        return httpx.Response(200, content=big)  # declared up front

    connector = InMemoryConnector(handler)
    client = pool(connector)
    for body in (b"chunked", b"declared"):
        response = await client.post("/chat/completions", body)
        with pytest.raises(UpstreamBodyTooLarge):
            await response.read(max_bytes=100_000)
        response.release()
    assert await post_read(client) == (200, big)
    await client.aclose()
    assert connector.connections == 3  # a refused body's connection is not reused


async def test_a_slow_reader_pauses_the_connection_and_loses_nothing():
    payload = bytes(range(256)) * 8192  # 2 MiB, far above the high-water mark

    async def pieces():
        for i in range(0, len(payload), 65536):
            yield payload[i:i + 65536]

    client = pool(InMemoryConnector(lambda r: httpx.Response(200, content=pieces())))
    response = await client.post("/chat/completions", BODY)
    received, paused, most_buffered = await read_slowly(response, 0.001)
    await client.aclose()
    assert received == payload
    assert paused and most_buffered <= 2 * HIGH_WATER  # bounded, not the whole 2 MiB


async def test_connection_close_gives_an_eof_delimited_body_and_no_reuse():
    connector = InMemoryConnector(lambda r: httpx.Response(200, stream=httpx.ByteStream(b"until the end"),
                                                           headers={"connection": "close"}))
    client = pool(connector)
    assert await post_read(client) == (200, b"until the end")
    assert await post_read(client) == (200, b"until the end")
    await client.aclose()
    assert connector.connections == 2


async def test_a_cancelled_request_frees_its_slot_and_a_broken_handler_is_reported():
    async def slow(request: httpx.Request) -> httpx.Response:
        if b"slow" in request.content:
            await asyncio.sleep(5)
        if b"bug" in request.content:
            raise KeyError("model")
        return httpx.Response(204)

    connector = InMemoryConnector(slow)
    client = pool(connector, limit=1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await client.post("/chat/completions", b"slow")
    assert await asyncio.wait_for(post_read(client), 2) == (204, b"")  # the only slot is free again
    with pytest.raises(UpstreamConnectError, match="handler raised KeyError"):
        await client.post("/chat/completions", b"bug")
    # a handler's bug is kept, not taken for a network failure; it broke a reused connection before
    # any byte, which the pool takes for a stale keep-alive connection and retries once on a new one
    assert [type(e) for e in connector.errors] == [KeyError, KeyError] and connector.connections == 3
    await client.aclose()
