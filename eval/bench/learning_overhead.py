"""What a shadowed request costs its client: gateway latency with the learning loop shadowing every
request vs the same gateway without a ``learning:`` section.

    python -m eval.bench.learning_overhead [--requests 400] [--rounds 4]

In process, so only the gateway's own work is timed: the real Gateway and ChatService (routing,
forwarding, the request log, ``LearningService.offer`` on the request path, and the shadow workers
competing for the same event loop in the background), with experts and the judge behind an
in-memory connection that answers at once (under the gateway's real HTTP client), and a deterministic
hash embedder (no model load).
Rounds alternate the two gateways (A/B/A/B) so drift on a shared machine hits both; the figure is
the difference of median and p90 latency per request, and the time ``offer`` itself takes.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

from router_gateway.container import Gateway, GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.domain.protocol import parse_chat_request
from router_gateway.domain.record import RequestRecord
from router_gateway.embedding.base import EmbedderInfo
from router_gateway.http.memory import InMemoryConnector
from router_gateway.pipeline import CallContext, ChatService


class HashEmbedder:
    def __init__(self):
        self.info = EmbedderInfo(name="all-MiniLM-L6-v2", dim=384, backend="hash")

    def embed(self, texts):
        rows = [np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))
                .standard_normal(384) for t in texts]
        X = np.asarray(rows, dtype=np.float32)
        return X / np.linalg.norm(X, axis=1, keepdims=True)


def connect(expert_ms: float = 0.0) -> InMemoryConnector:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"data": []})
        if expert_ms > 0:  # the expert takes a while: the client's request awaits, background work runs
            await asyncio.sleep(expert_ms / 1e3)
        model = orjson.loads(request.content)["model"]
        content = "7" if model == "judge" else f"answer from {model}"
        return httpx.Response(200, json={"id": "x", "object": "chat.completion", "model": model,
                                         "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                                         "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}})
    return InMemoryConnector(handler)


def config_text(tmp: Path, learning: bool) -> str:
    text = (
        "experts:\n"
        "  a: {base_url: http://stub/v1, model: a, price: {input_per_mtok: 1, output_per_mtok: 1}, prior_quality: 0.9}\n"
        "  b: {base_url: http://stub/v1, model: b, price: {input_per_mtok: 0.2, output_per_mtok: 0.2}}\n"
        "  judge: {base_url: http://stub/v1, model: judge, price: {input_per_mtok: 0.1, output_per_mtok: 0.1}}\n"
        "routers: {strong: {type: strongest}}\n"
        "profiles: {auto: {router: strong, cost_weight: 0, experts: [a, b]}}\n"
        f"logging: {{path: {tmp / ('learn' if learning else 'plain')}.db}}\n")
    if learning:
        text += ("learning:\n"
                 "  shadow: {sample: 1.0, experts: [a, b], policy: random, max_share: 10, usd_per_day: 1000}\n"
                 "  grader: {kinds: [judge], judge: {expert: judge}}\n"
                 "  retrain: {router: knn, params: {k: 10}, every_labels: 100000, min_labels: 100000}\n"
                 f"  promote: {{artifacts: {tmp / 'learning'}}}\n")
    return text


async def timed_requests(gateway: Gateway, n: int, tag: str) -> list[float]:
    chat, out = ChatService(gateway), []
    for i in range(n):
        body = {"model": "auto", "messages": [{"role": "user", "content": f"{tag} question number {i}"}]}
        t0 = time.perf_counter()
        await chat.handle(parse_chat_request(body), CallContext(f"{tag}-{i}", body, 90))
        out.append((time.perf_counter() - t0) * 1e3)
        await asyncio.sleep(0)  # let background work (log flush, shadow workers) run between requests
    return out


async def drain(gateway: Gateway, timeout_s: float = 30.0) -> None:
    """Wait until the shadowed gateway's backlog is done, so it does not run during the other's round
    (both gateways share this process's event loop)."""
    learning = gateway.learning
    if learning is None:
        return
    await asyncio.wait_for(learning.queue.join(), timeout_s)


async def run(requests: int, rounds: int, expert_ms: float = 0.0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gateways = {}
        for name, learning in (("plain", False), ("shadowed", True)):
            g = Gateway(GatewayOptions(config=parse_config(config_text(tmp, learning)), connect=connect(expert_ms),
                                       embedder=HashEmbedder(), health_interval_s=0))
            await g.start()
            gateways[name] = g
        lat = {"plain": [], "shadowed": []}
        try:
            await timed_requests(gateways["plain"], 50, "warm-p")
            await timed_requests(gateways["shadowed"], 50, "warm-s")
            per_round = []
            for r in range(rounds):
                got = {}
                for name in ("plain", "shadowed") if r % 2 == 0 else ("shadowed", "plain"):
                    await drain(gateways["shadowed"])
                    got[name] = await timed_requests(gateways[name], requests, f"{name}-{r}")
                    lat[name] += got[name]
                per_round.append({q: float(np.percentile(got["shadowed"], q) - np.percentile(got["plain"], q))
                                  for q in (50, 90, 99)})
            learning = gateways["shadowed"].learning
            n_offer = 20000
            records = [RequestRecord(f"o{i}", time.time(), profile="auto", status=200, cost_usd=1e-6,
                                     chosen_expert="a") for i in range(n_offer)]  # built before the clock starts
            full = learning.queue.maxsize
            t0 = time.perf_counter()
            for record in records:  # queue full after the first few: the drop path, as under overload
                learning.offer(record, {}, b"")
            offer_us = (time.perf_counter() - t0) / n_offer * 1e6
            stats = dict(learning.stats)
        finally:
            for g in gateways.values():
                await g.close()
    q = lambda xs, p: float(np.percentile(xs, p))  # noqa: E731
    out = {name: {"n": len(xs), "p50_ms": q(xs, 50), "p90_ms": q(xs, 90), "p99_ms": q(xs, 99),
                  "mean_ms": statistics.fmean(xs)} for name, xs in lat.items()}
    out["added_p50_ms"] = out["shadowed"]["p50_ms"] - out["plain"]["p50_ms"]
    out["added_p90_ms"] = out["shadowed"]["p90_ms"] - out["plain"]["p90_ms"]
    out["added_p99_ms"] = out["shadowed"]["p99_ms"] - out["plain"]["p99_ms"]
    # per round (A/B pairs run back to back): the median difference is robust to one noisy round
    out["added_p99_ms_median_of_rounds"] = float(np.median([r[99] for r in per_round]))
    out["added_p90_ms_median_of_rounds"] = float(np.median([r[90] for r in per_round]))
    out["offer_us"] = offer_us
    out["queue_size"] = full
    out["learning_stats"] = stats
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--expert-ms", type=float, default=2.0, help="each expert (and judge) call takes this long")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    result = asyncio.run(run(args.requests, args.rounds, args.expert_ms))
    result["expert_ms"] = args.expert_ms
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
