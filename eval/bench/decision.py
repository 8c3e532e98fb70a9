"""The routing decision alone, in process: prompt text -> embedding -> router -> policy.

Uses the gateway's own RoutingService with its micro-batching embedder, so the figure is what a
request pays before forwarding, minus HTTP. "Batched" runs 32 decisions concurrently, as under load.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

SHORT = "What is the capital of France?"
LONG = ("The quarterly report shows revenue growth of twelve percent, driven mostly by the new subscription "
        "tier, while operating costs rose by eight percent because of hiring in the support team. ") * 5


async def _measure(config_path: Path, n: int, batch: int) -> dict:
    from router_gateway.domain.config import load_config
    from router_gateway.domain.protocol import parse_chat_request
    from router_gateway.embedding.batcher import BatchingEmbedder
    from router_gateway.embedding.factory import make_embedder
    from router_gateway.routing.router_set import build_router_set
    from router_gateway.routing.service import RoutingService
    from router_gateway.state.expert_state import ExpertState

    config = load_config(config_path)
    s = config.embedder
    base = make_embedder(s.backend, model=s.model, threads=s.threads)
    embedder = BatchingEmbedder(base, s.max_batch, s.max_wait_ms, cache_size=0)  # no cache: pay each time
    await embedder.start()
    service = RoutingService(config, build_router_set(config, base.info), embedder, ExpertState())

    def request(text: str, i: int):
        body = {"model": "auto", "messages": [{"role": "user", "content": f"{text} ({i})"}]}
        return parse_chat_request(body), len(text) + 60

    async def one(text: str, i: int) -> float:
        chat, size = request(text, i)
        t0 = time.perf_counter()
        await service.decide(chat, size, f"bench-{i}")
        return (time.perf_counter() - t0) * 1e3

    out = {"embedder": base.info.as_dict(), "embed_threads": s.threads}
    try:
        for label, text in (("short", SHORT), ("200tok", LONG)):
            for i in range(3):
                await one(text, -i)  # warm-up
            cpu0 = time.process_time()  # CPU of every thread: robust when the host is shared
            times = [await one(text, i) for i in range(n)]
            out[label] = {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)),
                          "cpu_ms": (time.process_time() - cpu0) * 1e3 / n}
            rounds = []
            for r in range(max(2, n // batch)):
                t0 = time.perf_counter()
                await asyncio.gather(*(one(text, 10_000 * (r + 1) + j) for j in range(batch)))
                rounds.append((time.perf_counter() - t0) * 1e3 / batch)
            out[f"{label}_batched_per_prompt"] = float(np.median(rounds))
        out["tokens_200tok"] = len(base._tokenizer.encode(LONG).ids) if hasattr(base, "_tokenizer") else None
    finally:
        await embedder.close()
    return out


def measure_decision(config_path: Path, n: int = 100, batch: int = 32) -> dict:
    """p50/p99 ms of one decision (short and ~200-token prompts) and per-prompt ms when batched."""
    return asyncio.run(_measure(config_path, n, batch))
