"""A fast OpenAI-compatible stub expert for the performance benchmark (its own process).

Raw asyncio HTTP/1.1 (uvloop when installed) with keep-alive, so it costs far less CPU per request
than the gateway or proxy it is put behind. ``POST /v1/chat/completions`` answers plainly or as an
SSE stream (``--chunks`` content chunks, a usage chunk if ``stream_options.include_usage``, then
``data: [DONE]``) after ``--delay-ms``; ``GET /v1/models`` and ``GET /health`` answer at once.
A request may override the delay with the header ``x-stub-delay-ms``.

    python -m eval.bench.stub_expert --port 9001 --delay-ms 50 --chunks 16
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time

import orjson

_WORDS = [b"lorem", b"ipsum", b"dolor", b"sit", b"amet", b"consectetur", b"adipiscing", b"elit"]


class Settings:
    """Behaviour of the stub, from its command line."""

    def __init__(self, delay_ms: float = 0.0, chunks: int = 16, chunk_delay_ms: float = 0.0,
                 model: str = "stub-model"):
        self.delay = delay_ms / 1000.0
        self.chunks = chunks
        self.chunk_delay = chunk_delay_ms / 1000.0
        self.model = model


def _response(status: bytes, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: " + content_type + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: keep-alive\r\n\r\n" + body)


def completion_body(model: str, n_words: int, prompt_tokens: int) -> bytes:
    text = b" ".join(_WORDS[i % len(_WORDS)] for i in range(n_words)).decode()
    return orjson.dumps({
        "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n_words,
                  "total_tokens": prompt_tokens + n_words}})


def _chunk(model: str, delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    event = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()),
             "model": model, "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        event["usage"] = usage
    data = b"data: " + orjson.dumps(event) + b"\n\n"
    return hex(len(data))[2:].encode() + b"\r\n" + data + b"\r\n"  # one HTTP chunk per SSE event


class StubProtocol(asyncio.Protocol):
    """One connection: parse pipelined HTTP/1.1 requests from a buffer, answer each."""

    def __init__(self, settings: Settings):
        self.s = settings
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False  # one request at a time per connection (clients do not pipeline)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].decode("latin-1")
        lines = head.split("\r\n")
        method, path = lines[0].split(" ")[:2]
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if len(self.buf) < end + 4 + length:
            return
        body = self.buf[end + 4:end + 4 + length]
        self.buf = self.buf[end + 4 + length:]
        self.busy = True
        asyncio.ensure_future(self._handle(method, path, headers, body))

    async def _handle(self, method: str, path: str, headers: dict, body: bytes) -> None:
        t = self.transport
        try:
            if method == "GET" and path in ("/health", "/v1/health"):
                t.write(_response(b"200 OK", b'{"status":"ok"}'))
            elif method == "GET" and path in ("/v1/models", "/models"):
                t.write(_response(b"200 OK", orjson.dumps({"object": "list", "data": [
                    {"id": self.s.model, "object": "model", "owned_by": "stub"}]})))
            elif method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
                await self._chat(headers, body)
            else:
                t.write(_response(b"404 Not Found", b'{"error":{"message":"not found","type":"not_found",'
                                                    b'"param":null,"code":null}}'))
        finally:
            self.busy = False
        if self.buf and not t.is_closing():
            self._next()

    async def _chat(self, headers: dict, body: bytes) -> None:
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            self.transport.write(_response(b"400 Bad Request", b'{"error":{"message":"bad json","type":'
                                                               b'"invalid_request_error","param":null,"code":null}}'))
            return
        model = req.get("model") or self.s.model
        delay = float(headers.get("x-stub-delay-ms", self.s.delay * 1000)) / 1000.0
        prompt_tokens = max(1, len(body) // 4)
        if delay > 0:
            await asyncio.sleep(delay)
        if not req.get("stream"):
            self.transport.write(_response(b"200 OK", completion_body(model, self.s.chunks, prompt_tokens)))
            return
        await self._stream(model, prompt_tokens, bool((req.get("stream_options") or {}).get("include_usage")))

    async def _stream(self, model: str, prompt_tokens: int, include_usage: bool) -> None:
        t = self.transport
        t.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
                + _chunk(model, {"role": "assistant", "content": ""}))
        n = self.s.chunks
        for i in range(n):
            if self.s.chunk_delay > 0:
                await asyncio.sleep(self.s.chunk_delay)
            word = _WORDS[i % len(_WORDS)].decode()
            t.write(_chunk(model, {"content": word + " "}, "stop" if i == n - 1 else None))
        if include_usage:
            t.write(_chunk(model, {}, usage={"prompt_tokens": prompt_tokens, "completion_tokens": n,
                                             "total_tokens": prompt_tokens + n}))
        done = b"data: [DONE]\n\n"
        t.write(hex(len(done))[2:].encode() + b"\r\n" + done + b"\r\n0\r\n\r\n")

    def connection_lost(self, exc):
        self.transport = None


async def serve(host: str, port: int, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: StubProtocol(settings), host, port, backlog=4096,
                                      reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"stub expert on http://{host}:{port} (delay {settings.delay * 1000:g} ms, "
          f"{settings.chunks} chunks)", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    p.add_argument("--delay-ms", type=float, default=0.0, help="wait before answering (default 0)")
    p.add_argument("--chunks", type=int, default=16, help="content chunks per streamed answer")
    p.add_argument("--chunk-delay-ms", type=float, default=0.0, help="wait between stream chunks")
    p.add_argument("--model", default="stub-model")
    args = p.parse_args(argv)
    settings = Settings(args.delay_ms, args.chunks, args.chunk_delay_ms, args.model)
    try:
        run_fast(serve(args.host, args.port, settings))
    except KeyboardInterrupt:
        pass
    return 0


def run_fast(coro):
    """``asyncio.run`` on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
