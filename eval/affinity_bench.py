"""Micro-benchmark: what session affinity adds to a routing decision (target <= 0.1 ms per request).

    python -m eval.affinity_bench [--n 20000] [--redis redis://127.0.0.1:6379/0]

Times ``RoutingService.decide`` on the same 10-turn request (a 3,000-character system prompt) with and
without a session, interleaved, in one process with a fake transport: the difference is the session key
(digest of the opening), the pin lookup, reordering and the settle step that a pinned turn pays. The store
holds 100,000 other sessions. With ``--redis`` the store is mirrored in a real Redis: the GET is then a
network round trip; the gateway starts it before embedding the prompt so an embedding router hides it,
while this bench (a baseline router, no embedding) shows it in full.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np

from router_gateway.config import parse_config
from router_gateway.embedding.base import EmbedderInfo
from router_gateway.gateway import Gateway, GatewayOptions
from router_gateway.protocol import parse_chat_request
from router_gateway.services.sessions import session_ref

CONFIG = """
experts:
  a: {base_url: http://fake/v1, model: a, prior_quality: 0.5, price: {input_per_mtok: 0.1, output_per_mtok: 0.1}}
  b: {base_url: http://fake/v1, model: b, prior_quality: 0.9, price: {input_per_mtok: 1, output_per_mtok: 1}}
routers: {s: {type: strongest}}
profiles: {auto: {router: s, cost_weight: 0.5}}
logging: {path: %s}
"""


class NoEmbedder:
    """Stands in for the embedder the gateway starts with; the baseline router never calls it."""

    info = EmbedderInfo(name="all-MiniLM-L6-v2", dim=384, backend="none")

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), 384), dtype=np.float32)


def conversation() -> dict:
    messages = [{"role": "system", "content": "You are a careful coding assistant. " * 85}]
    for turn in range(10):
        messages += [{"role": "user", "content": f"Question {turn}: how do I fix the failing test number {turn}?"},
                     {"role": "assistant", "content": "Look at the fixture and the assertion. " * 5}]
    messages.append({"role": "user", "content": "And the last one?"})
    return {"model": "auto", "messages": messages}


async def bench(n: int, redis_url: str | None, tmp: str) -> None:
    # nothing is forwarded and the baseline router embeds nothing: no transport, a stand-in embedder
    gateway = Gateway(GatewayOptions(config=parse_config(CONFIG % f"{tmp}/log.db"), embedder=NoEmbedder(),
                                     health_interval_s=0, redis_url=redis_url, watch_config=False))
    await gateway.start()
    try:
        routing, affinity = gateway.runtime.routing, gateway.affinity
        for i in range(100_000):
            affinity.store.put(f"s-other{i}", "a", 3600)
        body = conversation()
        chat = parse_chat_request(body)
        ref = session_ref({}, body, chat.messages, None)
        affinity.store.put(ref.key, "a", 3600)
        await affinity.store.flush()
        plain, pinned = [], []
        for i in range(n):
            t0 = time.perf_counter()
            await routing.decide(chat, 8000, f"req-{i}")
            t1 = time.perf_counter()
            decision = await routing.decide(chat, 8000, f"req-{i}", session=session_ref({}, body, chat.messages, None))
            affinity.settle(decision, decision.chosen)
            t2 = time.perf_counter()
            plain.append(t1 - t0)
            pinned.append(t2 - t1)
            assert decision.chosen == "a" and decision.affinity.state == "kept"
        t0 = time.perf_counter()
        for _ in range(n):
            session_ref({}, body, chat.messages, None)
        key_us = (time.perf_counter() - t0) / n * 1e6
        mode = "redis" if redis_url else "local"
        print(f"store: {mode}; {n} decisions each way (interleaved), 10-turn request, 100k sessions in the store")
        print(f"decide without session: median {statistics.median(plain) * 1e6:.1f} us, "
              f"mean {statistics.fmean(plain) * 1e6:.1f} us")
        print(f"decide with session (kept) + settle: median {statistics.median(pinned) * 1e6:.1f} us, "
              f"mean {statistics.fmean(pinned) * 1e6:.1f} us")
        added = statistics.median(pinned) - statistics.median(plain)
        print(f"session key alone (digest of the opening): {key_us:.1f} us")
        print(f"affinity adds (median difference): {added * 1e3:.4f} ms per request "
              f"(target <= 0.1 ms: {'met' if added <= 1e-4 else 'NOT met'})")
    finally:
        await gateway.close()


def main() -> None:
    import tempfile
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--redis", default=None, help="redis URL: mirror the store there (shared-state mode)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args.n, args.redis, tmp))


if __name__ == "__main__":
    main()
