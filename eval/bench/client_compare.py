"""Upstream HTTP client cost, the gateway's hot path: httpx vs aiohttp vs the gateway's own http1_client
vs raw asyncio streams (a floor: no pool, no error handling).

Each client sends ``--requests`` chat completions to a running stub at ``--concurrency`` and we
report requests/s and CPU ms per request of this process (the client alone; the stub runs apart).

    python -m eval.bench.client_compare --url http://127.0.0.1:PORT --concurrency 32
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import time

import orjson

BODY = orjson.dumps({"model": "stub-model", "messages": [{"role": "user", "content": "hello there"}],
                     "max_tokens": 16})


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


async def _drive(call, n: int, concurrency: int) -> tuple[float, float]:
    counter = iter(range(n))

    async def worker():
        for _ in counter:
            await call()
    for _ in range(concurrency):  # warm-up: open the connections
        await call()
    c0, t0 = _cpu(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0), (_cpu() - c0) / n * 1e3


async def with_httpx(url: str, n: int, concurrency: int, pool: int) -> tuple[float, float]:
    import httpx
    limits = httpx.Limits(max_connections=pool * 2, max_keepalive_connections=pool)
    async with httpx.AsyncClient(base_url=url, limits=limits, headers={"content-type": "application/json"}) as c:
        async def call():
            r = await c.post("/v1/chat/completions", content=BODY)
            r.content
        return await _drive(call, n, concurrency)


async def with_aiohttp(url: str, n: int, concurrency: int, pool: int) -> tuple[float, float]:
    import aiohttp
    connector = aiohttp.TCPConnector(limit=pool * 2, limit_per_host=pool * 2)
    async with aiohttp.ClientSession(base_url=url, connector=connector,
                                     headers={"content-type": "application/json"}) as s:
        async def call():
            async with s.post("/v1/chat/completions", data=BODY) as r:
                await r.read()
        return await _drive(call, n, concurrency)


async def with_raw(url: str, n: int, concurrency: int, pool: int) -> tuple[float, float]:
    from urllib.parse import urlsplit

    from eval.bench.loadgen import build_request, read_response
    parts = urlsplit(url)
    free: list = []
    request = build_request(parts.netloc, "/v1/chat/completions", "stub-model", "hello there", False)

    async def call():
        conn = free.pop() if free else await asyncio.open_connection(parts.hostname, parts.port)
        conn[1].write(request)
        await read_response(conn[0])
        free.append(conn)
    return await _drive(call, n, concurrency)


async def with_http1(url: str, n: int, concurrency: int, pool: int) -> tuple[float, float]:
    from router_gateway.http.http1 import Http1Pool
    client = Http1Pool(url + "/v1", {"content-type": "application/json"}, limit=pool * 2, connect_timeout=5,
                       read_timeout=60, keepalive_s=4)

    async def call():
        r = await client.post("/chat/completions", BODY)
        await r.read()
        r.release()
    try:
        return await _drive(call, n, concurrency)
    finally:
        await client.aclose()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--pool", type=int, default=4096, help="pool size (the gateway uses max_concurrency)")
    p.add_argument("--clients", default="httpx,aiohttp,http1,raw")
    args = p.parse_args()
    from eval.bench.stub_expert import run_fast
    for name in args.clients.split(","):
        fn = {"httpx": with_httpx, "aiohttp": with_aiohttp, "http1": with_http1, "raw": with_raw}[name]
        rps, cpu_ms = run_fast(fn(args.url, args.requests, args.concurrency, args.pool))
        print(f"{name:8} c={args.concurrency:<4} pool={args.pool:<5} {rps:8.0f} req/s  {cpu_ms:6.3f} ms CPU/request")


if __name__ == "__main__":
    main()
