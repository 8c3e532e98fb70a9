"""uvicorn's httptools protocol with two limits it lacks: request header size and read time.

Why: uvicorn bounds neither with httptools (its h11 protocol bounds headers, but h11 is pure Python and
slower on the hot path). Without them one client could send 100 MB of headers (httptools joins a
header value piece by piece, so the cost grows faster than the size), or hold a connection and its
memory open forever by sending a request a byte at a time.

- Headers: the bytes a request sends before its headers are complete are counted as they arrive;
  past ``server.max_header_bytes`` the answer is 431 and the connection closes.
- Read time: from a connection's start, or a request's first byte, its headers and body must be in
  within ``server.request_read_timeout_s``. Otherwise the connection closes: with 408 while the
  headers are still incomplete; silently once the app has the request (it sees the client leave).
  Idle keep-alive connections keep uvicorn's own ``timeout_keep_alive``.

The limits are read from experts.yaml when the gateway starts (``configure``); a reload does not change
them.
"""
from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("router_gateway.api")

LIMITS = {"max_header_bytes": 64 * 1024, "request_read_timeout_s": 60.0}


def configure(server_settings) -> None:
    """Take the limits from ``config.server`` (each worker process calls this at startup)."""
    for name in LIMITS:
        value = getattr(server_settings, name, None)
        if value is not None:
            LIMITS[name] = value


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request that is refused."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus the header-size and read-time limits above."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_headers = True
        self._head_bytes = 0  # bytes received while the headers were incomplete (a header still coming)
        self._head_parsed = 0  # bytes of URL and headers the parser handed over (a whole head in one read)
        self._read_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, bytes] | None = None

    # -- limits ---------------------------------------------------------------------------
    def _arm_read_timer(self) -> None:
        self._cancel_read_timer()
        self._read_timer = self.loop.call_later(LIMITS["request_read_timeout_s"], self._read_timed_out)

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        log.warning("closing a connection whose request was not read within %s s (client %s)",
                    LIMITS["request_read_timeout_s"], self.client)
        if self._awaiting_headers:
            self._refuse(408, b"request headers not received in time")
        else:  # the app owns the response: leave it to see the client go
            self.transport.close()

    def _refuse(self, status: int, message: bytes) -> None:
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (status, reason, len(message), message))
        self.transport.close()

    # -- protocol and parser callbacks ----------------------------------------------------
    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None or self.transport.is_closing():
            return
        super().data_received(data)  # parses; its parser error answer is send_400_response below
        if self._awaiting_headers and self._refusal is None and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > LIMITS["max_header_bytes"]:
                log.warning("refused request headers over %d bytes (client %s)", LIMITS["max_header_bytes"],
                            self.client)
                self._refusal = (431, b"request headers too large")
                self._refuse(*self._refusal)

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:  # a callback refused the request: answer why, not a generic 400
            self._refuse(*self._refusal)
            return
        super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers, self._head_bytes, self._head_parsed = True, 0, 0
        self._arm_read_timer()

    def on_url(self, url: bytes) -> None:
        self._check_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._check_head(len(name) + len(value))
        super().on_header(name, value)

    def _check_head(self, size: int) -> None:
        # within one read the counting in data_received comes too late: count what the parser hands over
        self._head_parsed += size
        if self._head_parsed > LIMITS["max_header_bytes"]:
            self._refusal = (431, b"request headers too large")
            raise _Refused()

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False  # until the next request's first byte (on_message_begin)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_read_timer()  # idle keep-alive time is uvicorn's timeout_keep_alive
        super().on_message_complete()
