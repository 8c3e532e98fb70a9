"""A low-CPU closed-loop load generator for OpenAI-style chat endpoints (its own process).

``concurrency`` keep-alive connections each send one request after another for ``duration``
seconds (or until ``requests`` are done), over raw asyncio streams on uvloop: no HTTP library sits
between the clock and the socket. It records per-request latency and, for streams, time to first
byte of the body (the first SSE event). Prompts vary per request (a counter is appended) so that
embedding caches do not hide the cost of routing.

    python -m eval.bench.loadgen --url http://127.0.0.1:8080/v1/chat/completions --model auto \\
        --concurrency 32 --duration 5 [--stream]
Prints one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

PROMPTS = [
    "What is the capital of France?",
    "Write a Python function that checks whether a string is a palindrome.",
    "Explain the difference between TCP and UDP in two sentences.",
    "Solve for x: 3x + 7 = 22.",
    "Translate 'good morning, my friend' into German.",
    "Summarise the plot of Hamlet in three sentences.",
    "What are the side effects of ibuprofen?",
    "Write a SQL query to find the second highest salary in an employees table.",
    "Give me three tips for better sleep.",
    "Why does my React component re-render infinitely when I call setState in useEffect?",
]


@dataclass
class Result:
    """Latencies (ms) of successful requests, TTFT (ms) for streams, and failures."""

    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def build_request(host: str, path: str, model: str, prompt: str, stream: bool,
                  extra_headers: dict[str, str] | None = None, max_tokens: int = 16,
                  api_key: str = "bench") -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    data = orjson.dumps(body)
    head = (f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {api_key}\r\ncontent-length: {len(data)}\r\n")
    for key, value in (extra_headers or {}).items():
        head += f"{key}: {value}\r\n"
    return head.encode() + b"\r\n" + data


async def read_response(reader: asyncio.StreamReader) -> tuple[int, float | None, bytes]:
    """Read one HTTP/1.1 response; returns (status, perf_counter at the first body byte, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        first, parts = None, []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, first, b"".join(parts)
            data = await reader.readexactly(size + 2)
            if first is None:
                first = time.perf_counter()
            parts.append(data[:-2])
    idx = lower.find(b"content-length:")
    if idx < 0:
        raise ValueError("response without content-length or chunked encoding")
    length = int(lower[idx + 15:lower.find(b"\r\n", idx)])
    body = await reader.readexactly(length)
    return status, time.perf_counter(), body


async def _connection(host: str, port: int, make_request, result: Result, deadline: float,
                      budget: itertools.count | None, limit: int | None, warmup: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        n = 0
        while True:
            if time.perf_counter() >= deadline:
                return
            if budget is not None and next(budget) >= limit:
                return
            request, stream = make_request()
            t0 = time.perf_counter()
            writer.write(request)
            try:
                status, first, body = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
                result.error(type(exc).__name__)
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            t1 = time.perf_counter()
            n += 1
            if n <= warmup:
                continue
            if status != 200 or (stream and b"[DONE]" not in body[-64:]):
                result.error(f"http_{status}")
                continue
            result.latencies.append((t1 - t0) * 1e3)
            if stream and first is not None:
                result.ttfts.append((first - t0) * 1e3)
    finally:
        writer.close()


async def run_load(url: str, model: str, concurrency: int, duration: float, stream: bool,
                   requests: int | None = None, headers: dict[str, str] | None = None,
                   warmup: int = 2, unique: bool = True, api_key: str = "bench") -> Result:
    """Drive ``url`` with ``concurrency`` closed-loop connections; returns the raw result."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    counter = itertools.count()
    templates = [build_request(f"{host}:{port}", parts.path, model, p, stream, headers, api_key=api_key)
                 for p in PROMPTS]

    def make_request() -> tuple[bytes, bool]:
        i = next(counter)
        if not unique:
            return templates[i % len(templates)], stream
        prompt = f"{PROMPTS[i % len(PROMPTS)]} (request {i})"
        return build_request(f"{host}:{port}", parts.path, model, prompt, stream, headers,
                             api_key=api_key), stream

    result = Result()
    result.started = time.perf_counter()
    deadline = result.started + duration if duration else float("inf")
    budget = itertools.count() if requests else None
    await asyncio.gather(*(_connection(host, port, make_request, result, deadline, budget, requests, warmup)
                           for _ in range(concurrency)))
    result.finished = time.perf_counter()
    return result


def summarise(result: Result, concurrency: int, stream: bool) -> dict:
    """Percentiles and throughput of one run (times in ms)."""
    import numpy as np

    lat = np.asarray(result.latencies)
    elapsed = max(result.finished - result.started, 1e-9)
    out = {"concurrency": concurrency, "stream": stream, "n": int(lat.size), "errors": result.errors,
           "elapsed_s": round(elapsed, 3), "rps": round(lat.size / elapsed, 1)}
    if lat.size:
        out.update({"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
                    "p99": float(np.percentile(lat, 99)), "mean": float(lat.mean())})
    if result.ttfts:
        ttft = np.asarray(result.ttfts)
        out.update({"ttft_p50": float(np.percentile(ttft, 50)), "ttft_p99": float(np.percentile(ttft, 99))})
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="closed-loop load generator for chat completions")
    p.add_argument("--url", required=True)
    p.add_argument("--model", default="stub-model")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--duration", type=float, default=5.0, help="seconds (0: until --requests)")
    p.add_argument("--requests", type=int, default=None, help="stop after this many requests")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--header", action="append", default=[], help="extra header 'name: value'")
    p.add_argument("--warmup", type=int, default=2, help="requests per connection not recorded")
    p.add_argument("--api-key", default=os.environ.get("BENCH_API_KEY", "bench"))
    p.add_argument("--same-prompts", action="store_true", help="repeat 10 prompts (cache hits)")
    args = p.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    from eval.bench.stub_expert import run_fast
    result = run_fast(run_load(args.url, args.model, args.concurrency, args.duration, args.stream,
                               args.requests, headers, args.warmup, not args.same_prompts,
                               args.api_key))
    sys.stdout.write(orjson.dumps(summarise(result, args.concurrency, args.stream)).decode() + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
