"""The forwarding path's HTTP/1.1 client against real loopback servers that misbehave on purpose.

Each test server is a raw asyncio server whose handler decides, per request, exactly which bytes go
back and when the connection closes, so keep-alive reuse, stale connections, chunked framing, broken
bodies, timeouts, cancellation, back-pressure and the connection limit are all observable.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from router_gateway.http.errors import (
    UpstreamBodyError,
    UpstreamBodyTimeout,
    UpstreamBodyTooLarge,
    UpstreamConnectError,
)
from router_gateway.http.http1 import HIGH_WATER, Http1Pool
from tests.support.slow_reader import read_slowly

BODY = b'{"model": "m", "messages": []}'


class Server:
    """A loopback HTTP server: ``handler(server, conn_no, req_no, writer)`` answers each request."""

    def __init__(self, handler):
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.open_now = 0
        self.max_open = 0
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> "Server":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        conn_no, req_no = self.connections, 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                self.requests.append(head + await reader.readexactly(length))
                req_no += 1
                if await self.handler(self, conn_no, req_no, writer) is False:
                    return
        finally:
            self.open_now -= 1
            writer.close()


def ok(body: bytes = b'{"ok": true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body), extra, body)


async def answer_ok(server, conn_no, req_no, writer):
    writer.write(ok())


def pool(server: Server, **kw) -> Http1Pool:
    args = dict(limit=8, connect_timeout=2.0, read_timeout=5.0, keepalive_s=4.0)
    args.update(kw)
    return Http1Pool(server.url, {"content-type": "application/json", "authorization": "Bearer k"}, **args)


async def post_read(client: Http1Pool) -> tuple[int, bytes]:
    response = await client.post("/chat/completions", BODY)
    try:
        return response.status, await response.read()
    finally:
        response.release()


async def test_sends_the_request_and_reuses_the_connection():
    async with Server(answer_ok) as server:
        client = pool(server)
        for _ in range(3):
            assert await post_read(client) == (200, b'{"ok": true}')
        await client.aclose()
    assert server.connections == 1
    request = server.requests[0]
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{server.port}\r\n".encode() in request
    assert b"authorization: Bearer k\r\n" in request and request.endswith(b"\r\n\r\n" + BODY)


async def test_streams_chunked_body_as_it_arrives():
    release = asyncio.Event()

    async def chunked(server, conn_no, req_no, writer):
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release.wait()  # the client must see "first" before the rest exists
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    async with Server(chunked) as server:
        client = pool(server)
        response = await client.post("/chat/completions", BODY)
        chunks = response.chunks()
        assert await asyncio.wait_for(chunks.__anext__(), 2) == b"first"
        release.set()
        assert [c async for c in chunks] == [b"second"]
        response.release()
        assert await post_read(client) is not None  # the same connection serves the next request
        await client.aclose()
    assert server.connections == 1


async def test_idle_connection_closed_by_the_server_is_retried_on_a_new_one():
    async def close_on_second(server, conn_no, req_no, writer):
        if req_no == 2:  # the keep-alive race: the server drops the connection as the request arrives
            return False
        writer.write(ok())

    async with Server(close_on_second) as server:
        client = pool(server)
        assert (await post_read(client))[0] == 200
        assert (await post_read(client))[0] == 200
        await client.aclose()
    assert server.connections == 2


async def test_connection_close_and_eof_delimited_bodies():
    async def eof_body(server, conn_no, req_no, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        return False

    async with Server(eof_body) as server:
        client = pool(server)
        assert await post_read(client) == (200, b"until the end")
        assert await post_read(client) == (200, b"until the end")
        await client.aclose()
    assert server.connections == 2  # never reused after connection: close


async def test_a_response_without_a_body_keeps_the_connection():
    async def no_content(server, conn_no, req_no, writer):
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    async with Server(no_content) as server:
        client = pool(server)
        assert await post_read(client) == (204, b"")
        assert await post_read(client) == (204, b"")
        await client.aclose()
    assert server.connections == 1


async def test_refused_connection_is_a_connect_failure():
    async with Server(answer_ok) as server:
        url = server.url
    client = Http1Pool(url, {}, limit=2, connect_timeout=2, read_timeout=2, keepalive_s=4)
    with pytest.raises(UpstreamConnectError):
        await client.post("/chat/completions", BODY)


async def test_a_connect_failure_does_not_name_the_experts_address():
    # its text reaches the client in the gateway's 502: an internal address is not for callers
    async with Server(answer_ok) as server:
        url = server.url
    client = Http1Pool(url, {}, limit=2, connect_timeout=2, read_timeout=2, keepalive_s=4)
    with pytest.raises(UpstreamConnectError) as failed:
        await client.post("/chat/completions", BODY)
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert str(failed.value) == "ConnectionRefusedError" and port not in str(failed.value)


async def test_close_before_headers_is_a_connect_failure_and_mid_body_a_body_failure():
    async def hang_up(server, conn_no, req_no, writer):
        return False

    async with Server(hang_up) as server:
        client = pool(server)
        with pytest.raises(UpstreamConnectError):
            await client.post("/chat/completions", BODY)

    async def cut_body(server, conn_no, req_no, writer):
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        return False

    async with Server(cut_body) as server:
        client = pool(server)
        response = await client.post("/chat/completions", BODY)
        with pytest.raises(UpstreamBodyError):
            await response.read()
        response.release()
        await client.aclose()


async def test_invalid_response_is_refused():
    async def garbage(server, conn_no, req_no, writer):
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")

    async with Server(garbage) as server:
        client = pool(server)
        with pytest.raises(UpstreamConnectError):
            await client.post("/chat/completions", BODY)
        await client.aclose()


async def test_an_inactive_body_times_out():
    async def stall(server, conn_no, req_no, writer):
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n")
        await asyncio.sleep(3)

    async with Server(stall) as server:
        client = pool(server, read_timeout=0.3)
        response = await client.post("/chat/completions", BODY)
        chunks = response.chunks()
        assert await chunks.__anext__() == b"hi"
        with pytest.raises(UpstreamBodyError, match="read timeout"):
            await chunks.__anext__()
        response.release()
        await client.aclose()


async def test_cancelled_request_frees_its_slot_and_closes_its_connection():
    async def slow_first(server, conn_no, req_no, writer):
        if conn_no == 1:
            await asyncio.sleep(3)
        writer.write(ok())

    async with Server(slow_first) as server:
        client = pool(server, limit=1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.post("/chat/completions", BODY)
        # the only slot is free again and the abandoned connection is not reused
        assert await asyncio.wait_for(post_read(client), 2) == (200, b'{"ok": true}')
        await client.aclose()
    assert server.connections == 2


async def test_limit_caps_open_connections():
    async def slow(server, conn_no, req_no, writer):
        await asyncio.sleep(0.1)
        writer.write(ok())

    async with Server(slow) as server:
        client = pool(server, limit=2)
        results = await asyncio.gather(*(post_read(client) for _ in range(6)))
        await client.aclose()
    assert all(status == 200 for status, _ in results)
    assert server.max_open <= 2 and server.connections == 2


async def test_slow_reader_pauses_the_socket_and_loses_nothing():
    payload = bytes(range(256)) * 8192  # 2 MiB, far above the high-water mark

    async def big(server, conn_no, req_no, writer):
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload))
        for i in range(0, len(payload), 65536):
            writer.write(payload[i:i + 65536])
            await writer.drain()

    async with Server(big) as server:
        client = pool(server)
        response = await client.post("/chat/completions", BODY)
        received, paused, most_buffered = await read_slowly(response, 0.01)
        await client.aclose()
    assert received == payload
    assert paused and most_buffered <= 2 * HIGH_WATER  # bounded, not the whole 2 MiB


async def test_a_body_still_coming_at_the_deadline_fails_even_while_data_flows():
    """Data arriving every 20 ms never trips the read (idle) timeout: the deadline must end it anyway."""
    async def endless(server, conn_no, req_no, writer):
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"9\r\ndata: x\n\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.02)

    async with Server(endless) as server:
        client = pool(server, read_timeout=5.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await client.post("/chat/completions", BODY, deadline=time.monotonic() + 0.5)
        assert response.content_type == "text/event-stream"
        received = 0
        with pytest.raises(UpstreamBodyTimeout, match="deadline"):
            async for _ in response.chunks():
                received += 1
        assert received > 5 and 0.5 <= loop.time() - started < 2.0
        response.release()
        await client.aclose()


async def test_read_refuses_a_body_over_the_limit_and_drops_the_connection():
    async def big(server, conn_no, req_no, writer):
        body = b"x" * 300_000
        if req_no == 1:  # chunked: the size shows only while reading
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
                         % (len(body), body))
        else:  # declared up front: refused before reading
            writer.write(ok(body))

    async with Server(big) as server:
        client = pool(server)
        for _ in range(2):
            response = await client.post("/chat/completions", BODY)
            with pytest.raises(UpstreamBodyTooLarge):
                await response.read(max_bytes=100_000)
            response.release()
        assert await post_read(client) == (200, b"x" * 300_000)  # no limit: read whole
        await client.aclose()
    assert server.connections == 3  # a refused body's connection is not reused
