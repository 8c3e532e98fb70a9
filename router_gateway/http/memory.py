"""An in-memory connection for the HTTP client: the test seam, like httpx's ``MockTransport``.

``InMemoryConnector(handler)`` is a connection factory for ``Http1Pool`` (and so for the forwarder,
health checks and engine-metrics scrapes, through ``GatewayOptions.connect``). No socket is opened:
each request the client writes is parsed (httptools) into an ``httpx.Request``, handed to
``handler`` (sync or async, ``httpx.Request -> httpx.Response``), and the response is serialised back
to HTTP/1.1 bytes and fed to the client's real protocol and response parser. So a unit test runs the
client's parser, keep-alive pooling, connection limit, timeouts, size limits, back-pressure and the
forwarder's SSE relay exactly as production does; only the socket is replaced.

What the handler can do, and how it reaches the client:
- return a response: a declared ``content-length`` is sent as is, ``connection: close`` without a
  length gives a body delimited by the end of the connection, anything else is sent chunked, one
  chunk per piece of the response's stream (an async generator may sleep between pieces);
- sleep before returning: the client waits for the headers (its caller's timeouts apply);
- raise ``httpx.ConnectError`` (or any ``httpx.TransportError``): the connection is lost before the
  headers, as with a refused or reset connection; raised from the body's stream, the body breaks off
  after what was sent. Any other exception is a bug in the test's handler: it is logged, kept in
  ``connector.errors``, and the connection is lost the same way.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import httptools
import httpx

log = logging.getLogger("router_gateway.http.memory")

Handler = Callable[[httpx.Request], "httpx.Response | Awaitable[httpx.Response]"]


class InMemoryConnector:
    """A ``Connector`` whose server is ``handler``; counts the connections it made."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.connections = 0
        self.errors: list[BaseException] = []  # exceptions of the handler that were not transport errors

    async def __call__(self, protocol_factory: Callable[[], asyncio.Protocol], host: str, port: int,
                       ssl_context: ssl.SSLContext | None) -> tuple[asyncio.Transport, asyncio.Protocol]:
        self.connections += 1
        protocol = protocol_factory()
        transport = _MemoryTransport(self, protocol, "https" if ssl_context else "http", host, port)
        protocol.connection_made(transport)
        return transport, protocol


class _MemoryTransport(asyncio.Transport):
    """The client's end of one in-memory connection; the server's end runs ``handler`` per request."""

    def __init__(self, connector: InMemoryConnector, protocol: asyncio.Protocol, scheme: str, host: str,
                 port: int):
        super().__init__()
        self._connector = connector
        self._protocol = protocol
        self._scheme = scheme
        self._default_host = host if port == (443 if scheme == "https" else 80) else f"{host}:{port}"
        self._parser = httptools.HttpRequestParser(self)
        self._readable = asyncio.Event()
        self._readable.set()
        self._closing = False
        self._lost = False
        self._server: asyncio.Task | None = None
        self._new_request()

    # -- the client writes a request -------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:  # the client sent something that is not HTTP
            self._lose(ConnectionResetError(f"bad request: {exc}"))

    def _new_request(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        host = next((v.decode("latin-1") for k, v in self._headers if k.lower() == b"host"), self._default_host)
        request = httpx.Request(self._parser.get_method().decode(),
                                f"{self._scheme}://{host}{self._url.decode('latin-1')}",
                                headers=self._headers, content=b"".join(self._body))
        self._new_request()
        self._server = asyncio.get_running_loop().create_task(self._serve(request))

    # -- the server answers ----------------------------------------------------------------
    async def _serve(self, request: httpx.Request) -> None:
        try:
            response = self._connector.handler(request)
            if inspect.isawaitable(response):
                response = await response
        except httpx.TransportError as exc:
            self._lose(ConnectionRefusedError(str(exc)) if isinstance(exc, httpx.ConnectError)
                       else ConnectionResetError(str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - the test's handler is broken: say so, fail the request
            self._handler_bug(exc)
            return
        try:
            await self._send(response)
        except _Gone:  # the client closed the connection: nobody reads the rest
            return
        except httpx.TransportError as exc:  # the body breaks off after what was sent
            self._lose(ConnectionResetError(str(exc)))
            return
        except Exception as exc:  # noqa: BLE001
            self._handler_bug(exc)
            return
        if response.headers.get("connection", "").lower() == "close":
            self._end_of_stream()

    async def _send(self, response: httpx.Response) -> None:
        framing = _framing(response)
        await self._deliver(_head(response, framing))
        if framing == "none":
            return
        async for piece in _pieces(response):
            if piece:
                await self._deliver(b"%x\r\n%s\r\n" % (len(piece), piece) if framing == "chunked" else piece)
        if framing == "chunked":
            await self._deliver(b"0\r\n\r\n")

    async def _deliver(self, data: bytes) -> None:
        """Bytes to the client as a socket would hand them over: never while it paused reading."""
        await self._readable.wait()
        if self._closing:
            raise _Gone
        self._protocol.data_received(data)
        await asyncio.sleep(0)  # one read per loop turn: the client consumes between them

    def _handler_bug(self, exc: Exception) -> None:
        log.error("in-memory server: the handler raised %r", exc, exc_info=exc)
        self._connector.errors.append(exc)
        self._lose(ConnectionResetError(f"the handler raised {type(exc).__name__}"))

    def _end_of_stream(self) -> None:
        """The server closed its side after the response, as ``connection: close`` says."""
        if not self._closing:
            self._protocol.eof_received()
            self._lose(None)

    def _lose(self, exc: Exception | None) -> None:
        self._closing = True
        if not self._lost:
            self._lost = True
            self._protocol.connection_lost(exc)

    # -- asyncio.Transport -----------------------------------------------------------------
    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._readable.set()  # a server paused mid-body wakes up to find the connection gone
        if self._server is not None and asyncio.current_task() is not self._server:
            self._server.cancel()
        asyncio.get_running_loop().call_soon(self._lose, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    def is_reading(self) -> bool:
        return self._readable.is_set()

    def get_extra_info(self, name: str, default=None):
        return default

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False


class _Gone(Exception):
    """The client closed the connection while the server was answering."""


def _framing(response: httpx.Response) -> str:
    """How the body is delimited on the wire: 'none' (statuses without a body), 'length', 'close'
    (the end of the connection) or 'chunked'."""
    if response.status_code < 200 or response.status_code in (204, 304):
        return "none"
    if "content-length" in response.headers:
        return "length"
    if response.headers.get("connection", "").lower() == "close":
        return "close"
    return "chunked"


def _head(response: httpx.Response, framing: str) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (response.status_code, response.reason_phrase.encode("latin-1"))]
    lines += [name + b": " + value for name, value in response.headers.raw
              if name.lower() != b"transfer-encoding"]
    if framing == "chunked":
        lines.append(b"transfer-encoding: chunked")
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _pieces(response: httpx.Response) -> AsyncIterator[bytes]:
    """The response's body as its stream yields it (async or sync streams)."""
    stream = response.stream
    if hasattr(stream, "__aiter__"):
        async for piece in stream:
            yield piece
    else:
        for piece in stream:
            yield piece
