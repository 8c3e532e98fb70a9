"""A lean HTTP/1.1 client for the forwarding hot path: pooled keep-alive connections to one origin.

Why not aiohttp: profiled at c=32 pass-through, aiohttp's request machinery (URL objects, ClientRequest
and ClientResponse objects, the payload writer, the stream reader) was a fifth of the gateway's CPU per
request. The gateway sends one kind of request (a JSON POST) to one origin per expert and relays the
body bytes as they come, which takes an asyncio Protocol, httptools' C response parser (chunked
decoding included) and a list of idle connections.

What a pooled client must get right, and where it is done here:
- a connection is reused only after its previous response was read to the end and both sides keep it
  alive (``_Connection.reusable``); an idle one is dropped after ``keepalive_s``;
- a request that fails on a *reused* connection before any byte of the answer came back is sent once
  more on a fresh connection: the server closed the idle connection as we picked it up;
- a slow reader pauses the socket (bounded buffering); an inactive body times out (``read_timeout``), and
  a body still coming at the caller's ``deadline`` fails with ``UpstreamBodyTimeout`` (an upstream that never
  stops streaming is cut there); ``read(max_bytes)`` refuses a body larger than the caller's limit;
- at most ``limit`` connections are open; further requests wait for one.

Connections come from a connection factory (``Connector``, the signature of ``loop.create_connection``
cut to what is used): real TCP/TLS by default (``tcp_connect``), an in-memory one in unit tests
(router_gateway/http/memory.py), so tests exercise everything above the socket.
"""
from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import httptools

from router_gateway.http.errors import (
    UpstreamBodyError,
    UpstreamBodyTimeout,
    UpstreamBodyTooLarge,
    UpstreamConnectError,
)

#: pause reading from the socket while this many body bytes wait for the consumer
HIGH_WATER = 256 * 1024
#: below uvicorn's (and so vLLM's) 5 s idle timeout, so a pooled connection is never reused
#: just as the server closes it
KEEPALIVE_S = 4.0

#: makes a connection: (protocol factory, host, port, TLS context or None) -> (transport, protocol)
Connector = Callable[[Callable[[], asyncio.Protocol], str, int, "ssl.SSLContext | None"],
                     Awaitable[tuple[asyncio.BaseTransport, asyncio.Protocol]]]


async def tcp_connect(protocol_factory: Callable[[], asyncio.Protocol], host: str, port: int,
                      ssl_context: ssl.SSLContext | None) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
    """The default connection factory: a real TCP (or TLS) connection."""
    loop = asyncio.get_running_loop()
    return await loop.create_connection(protocol_factory, host, port, ssl=ssl_context,
                                        server_hostname=host if ssl_context else None)


class _Connection(asyncio.Protocol):
    """One TCP connection; carries one request/response at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.content_type = b""
        self.content_length: int | None = None
        self.got_bytes = False
        self.headers_done: asyncio.Future | None = None
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future | None = None
        self.paused = False
        self.until_eof = True  # neither content-length nor chunked: the body ends when the connection does

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self.headers_done is None or self.complete:  # bytes nobody asked for: the connection is unusable
            self._fail(UpstreamBodyError("unexpected data from the server"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamBodyError(f"invalid HTTP response: {exc}"))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done is not None and self.headers_done.done() and self.until_eof and not self.complete \
                and self.error is None:
            self.complete = True  # a body delimited by the end of the connection ends here
            self._wake()
            return
        self._fail(UpstreamBodyError("the server closed the connection" + (f": {exc}" if exc else "")))

    def pause_writing(self) -> None:  # the request is written in one call; nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ---------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self.until_eof = False
        if name == b"content-type":
            self.content_type = value
        elif name == b"content-length" and value.strip().isdigit():
            self.content_length = int(value)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status < 200:  # 1xx: an interim response (we send no Expect); the real one follows
            return
        if self.headers_done is not None and not self.headers_done.done():
            self.headers_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status < 200:
            return
        self.keep_alive = self.parser.should_keep_alive()  # llhttp resets it once this callback returns
        self.until_eof = False  # the parser found the end itself (length, chunks, or none: 204, 304)
        self.complete = True
        self._wake()

    # -- the caller's side -----------------------------------------------------------------
    def _fail(self, error: Exception) -> None:
        if self.error is None and not self.complete:
            self.error = error
        if self.headers_done is not None and not self.headers_done.done():
            self.headers_done.set_exception(UpstreamConnectError(str(error)))
            self.headers_done.exception()  # retrieved: the caller may already be gone
        self._wake()
        self.close()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def send(self, request: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        self._reset()
        self.headers_done = loop.create_future()
        assert self.transport is not None
        self.transport.write(request)
        return self.headers_done

    async def next_chunk(self, read_timeout: float | None, deadline: float | None = None) -> bytes | None:
        """The next piece of body as it arrived; None at the end. ``deadline`` (time.monotonic()) ends
        the body even while data keeps coming."""
        while not self.body:
            if self.complete:
                return None
            if self.error is not None:
                raise UpstreamBodyError(str(self.error))
            timeout, why = read_timeout, f"read timeout: no data from the server for {read_timeout} s"
            if deadline is not None and (timeout is None or deadline - time.monotonic() < timeout):
                timeout, why = deadline - time.monotonic(), "the body was still coming at the deadline"
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self.waiter
            except TimeoutError:
                self._fail(UpstreamBodyTimeout(why))
                raise UpstreamBodyTimeout(why) from None
            finally:
                self.waiter = None
        if deadline is not None and time.monotonic() > deadline:  # data that never stops still ends here
            self._fail(UpstreamBodyTimeout("the body was still coming at the deadline"))
            raise UpstreamBodyTimeout("the body was still coming at the deadline")
        chunk = self.body.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered <= HIGH_WATER // 4 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    @property
    def reusable(self) -> bool:
        return self.complete and not self.closed and self.error is None and not self.until_eof \
            and self.keep_alive

    def close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class Response:
    """Status after the headers; the body is streamed with ``chunks()`` or read whole with ``read()``.
    ``release()`` must be called once: it returns the connection to the pool or closes it."""

    def __init__(self, pool: Http1Pool, conn: _Connection, deadline: float | None = None):
        self._pool = pool
        self._conn = conn
        self.status = conn.status
        self.content_type = conn.content_type.decode("latin-1")
        self.deadline = deadline
        self._released = False

    @property
    def is_event_stream(self) -> bool:
        return self.content_type.split(";", 1)[0].strip().lower() == "text/event-stream"

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (iterate once)."""
        while True:
            chunk = await self._conn.next_chunk(self._pool.read_timeout, self.deadline)
            if chunk is None:
                return
            yield chunk

    async def read(self, max_bytes: int | None = None) -> bytes:
        """The whole body; ``UpstreamBodyTooLarge`` (and the connection closed) beyond ``max_bytes``."""
        declared = self._conn.content_length
        if max_bytes is not None and declared is not None and declared > max_bytes:
            self._too_large(max_bytes, f"declares {declared} bytes")
        parts, size = [], 0
        while True:
            chunk = await self._conn.next_chunk(self._pool.read_timeout, self.deadline)
            if chunk is None:
                return b"".join(parts)
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                self._too_large(max_bytes, f"passed {size} bytes")
            parts.append(chunk)

    def _too_large(self, max_bytes: int, what: str) -> None:
        self._conn._fail(UpstreamBodyTooLarge(f"body over the limit of {max_bytes} bytes ({what})"))
        raise UpstreamBodyTooLarge(f"the body {what}, over the limit of {max_bytes} bytes")

    def release(self) -> None:
        """Done with this response: a fully read, keep-alive connection goes back to the pool."""
        if not self._released:
            self._released = True
            self._pool._put_back(self._conn)

    async def close(self) -> None:
        """``release()`` for async callers (the forwarder closes every response it opened)."""
        self.release()


class Http1Pool:
    """Keep-alive connections to one origin (``scheme://host:port``), at most ``limit`` open at once."""

    def __init__(self, base_url: str, headers: dict[str, str], limit: int, connect_timeout: float,
                 read_timeout: float | None, keepalive_s: float = KEEPALIVE_S, connect: Connector | None = None):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme in {base_url!r}")
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.prefix = parts.path.rstrip("/")
        default_port = (parts.scheme == "https" and self.port == 443) or (parts.scheme == "http" and self.port == 80)
        host_header = parts.hostname if default_port else f"{parts.hostname}:{self.port}"
        if ":" in (parts.hostname or "") and not default_port:  # IPv6 literal
            host_header = f"[{parts.hostname}]:{self.port}"
        fixed = {"host": host_header, **{k.lower(): v for k, v in headers.items()}}
        self._fixed_headers = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_s = keepalive_s
        self._connect_to = connect or tcp_connect
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(limit)
        self._open: set[_Connection] = set()
        self._closed = False

    def _request_bytes(self, method: str, path: str, body: bytes, headers: dict[str, str] | None) -> bytes:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) if headers else ""
        length = f"content-length: {len(body)}\r\n" if body or method == "POST" else ""
        head = f"{method} {self.prefix}{path} HTTP/1.1\r\n{self._fixed_headers}{extra}{length}\r\n"
        return head.encode("latin-1") + body

    def post(self, path: str, body: bytes, deadline: float | None = None) -> Awaitable[Response]:
        """Send the request; returns once the response headers are in (``UpstreamConnectError`` if they
        never come). The body must be complete by ``deadline`` (time.monotonic()), else
        ``UpstreamBodyTimeout``. (Not a coroutine itself: no extra frame on the hot path.)"""
        return self.request("POST", path, body, deadline)

    async def request(self, method: str, path: str, body: bytes = b"", deadline: float | None = None,
                      headers: dict[str, str] | None = None) -> Response:
        """``post`` for any method; ``headers`` are sent besides the pool's own."""
        if self._closed:
            raise UpstreamConnectError("client closed")
        await self._slots.acquire()
        try:
            request = self._request_bytes(method, path, body, headers)
            loop = asyncio.get_running_loop()
            conn = self._take_idle()
            if conn is not None:
                try:
                    return await self._exchange(conn, request, loop, deadline)
                except UpstreamConnectError:
                    if conn.got_bytes:
                        raise
                    # the server closed the idle connection as we reused it: once more, on a new one
            return await self._exchange(await self._connect(), request, loop, deadline)
        except BaseException:
            self._slots.release()
            raise

    async def _exchange(self, conn: _Connection, request: bytes, loop: asyncio.AbstractEventLoop,
                        deadline: float | None) -> Response:
        try:
            await conn.send(request, loop)
        except BaseException:  # failed, timed out or cancelled mid-request: the connection cannot be reused
            self._discard(conn)
            raise
        return Response(self, conn, deadline)

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # most recently used first: its peer is least likely to have closed it
            if not conn.closed and now - conn.idle_since < self.keepalive_s:
                conn.reused = True
                return conn
            self._discard(conn)
        return None

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await self._connect_to(_Connection, self.host, self.port, self.ssl)
        except TimeoutError:
            raise UpstreamConnectError(f"connect timeout after {self.connect_timeout} s") from None
        except OSError as exc:
            # the error's text names the expert's address ("Connect call failed ('10.0.0.7', 8000)"): it
            # reaches the client in the 502, so only its kind is kept (the expert's name says which)
            raise UpstreamConnectError(type(exc).__name__) from None
        self._open.add(conn)
        return conn

    def _put_back(self, conn: _Connection) -> None:
        self._slots.release()
        if conn.reusable and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            self._discard(conn)

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._open):
            self._discard(conn)
        self._idle.clear()
