"""What a shadowed request costs its client: gateway latency of shadowed vs not-shadowed requests.

    python -m eval.bench.learning_overhead [--rounds 20] [--requests 300] [--sample 0.5]

In process, through the real ASGI app (the HTTP handler, routing, forwarding, the request log,
``LearningService.offer`` on the request path, the answer's send, and the shadow workers, label
writes and retrains competing for the same process in the background), with experts and the judge
behind an in-memory connection that answers after ``--expert-ms``, and a deterministic hash
embedder (no model load). ``--clients`` clients each send a request, wait for the answer, then think
for an exponential time (mean ``--think-ms``), so background work runs in the gaps and sometimes
collides with a request, as in real traffic.

Two comparisons, each with a 95% confidence interval from a cluster bootstrap over rounds (rounds,
not requests, are resampled: latency drifts on a shared machine and requests of one round share it):

* ``shadowed_vs_not``: in the rounds on the learning gateway, the requests that were shadowed (hash
  of the request id below ``shadow.sample``, queued by ``offer``) against those that were not. They
  are interleaved in the same run, so drift and background load hit both sides alike; the difference
  is what shadowing a request adds to that request's own latency.
* ``learning_vs_plain``: every request on the learning gateway against every request on the same
  gateway without a ``learning:`` section; rounds alternate the two (A/B, B/A, ...). The shadow
  backlog is drained between rounds, outside the timing, so it never runs during the plain rounds.
  The difference is what the background work of the loop costs every client.
* ``aa_control``: the learning rounds' requests split in two by a hash unrelated to shadowing: what
  the method reads when there is nothing to find (its interval is the resolution on this machine).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

from router_gateway.app import create_app
from router_gateway.container import GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.domain.record import RequestRecord
from router_gateway.embedding.base import EmbedderInfo
from router_gateway.http.memory import InMemoryConnector
from routers.policy import unit_hash

QUANTILES = (50, 95, 99)


class HashEmbedder:
    def __init__(self):
        self.info = EmbedderInfo(name="all-MiniLM-L6-v2", dim=384, backend="hash")

    def embed(self, texts):
        rows = [np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))
                .standard_normal(384) for t in texts]
        X = np.asarray(rows, dtype=np.float32)
        return X / np.linalg.norm(X, axis=1, keepdims=True)


def connect(expert_ms: float) -> InMemoryConnector:
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
    return InMemoryConnector(handler)  # under the gateway's real HTTP client


def config_text(tmp: Path, learning: bool, sample: float, retrain_every: int) -> str:
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
                 f"  shadow: {{sample: {sample}, experts: [a, b], policy: random, max_share: 10, usd_per_day: 1000}}\n"
                 "  grader: {kinds: [judge], judge: {expert: judge}}\n"
                 f"  retrain: {{router: knn, params: {{k: 10}}, every_labels: {retrain_every}, "
                 f"min_labels: {retrain_every}}}\n"
                 f"  promote: {{artifacts: {tmp / 'learning'}}}\n")
    return text


class Arm:
    """One gateway app, its in-process client, and (learning) the ids of the requests it shadowed."""

    def __init__(self, app):
        self.app = app
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        self.shadowed: set[str] = set()

    def watch_offers(self) -> None:
        learning = self.app.state.gateway.learning
        offer = learning.offer

        def recording_offer(record, body, answer):  # which requests were queued for shadowing
            before = learning.stats["queued"]
            offer(record, body, answer)
            if learning.stats["queued"] > before:
                self.shadowed.add(record.request_id)
        learning.offer = recording_offer


async def client_loop(arm: Arm, n: int, tag: str, think_ms: float, rng: np.random.Generator,
                      out: list[tuple[str, float]]) -> None:
    for i in range(n):
        body = {"model": "auto", "messages": [{"role": "user", "content": f"{tag} question number {i}"}]}
        t0 = time.perf_counter()
        response = await arm.client.post("/v1/chat/completions", json=body)
        out.append((response.headers["x-request-id"], (time.perf_counter() - t0) * 1e3))
        if response.status_code != 200:
            raise RuntimeError(f"request failed: {response.status_code} {response.text}")
        if think_ms > 0:
            await asyncio.sleep(rng.exponential(think_ms) / 1e3)


async def one_round(arm: Arm, requests: int, clients: int, think_ms: float, tag: str,
                    rng: np.random.Generator) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    per = requests // clients
    await asyncio.gather(*(client_loop(arm, per, f"{tag}-c{c}", think_ms, rng, out) for c in range(clients)))
    return out


async def drain(arm: Arm, timeout_s: float = 900.0) -> None:
    """The learning gateway's shadow backlog is done (outside the timing, before the other arm's round)."""
    learning = arm.app.state.gateway.learning
    if learning is not None:
        await asyncio.wait_for(learning.queue.join(), timeout_s)


async def measure(args) -> dict:
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        arms, contexts = {}, []
        for name, learning in (("learning", True), ("plain", False)):
            config = parse_config(config_text(tmp, learning, args.sample, args.retrain_every))
            app = create_app(GatewayOptions(config=config, connect=connect(args.expert_ms),
                                            embedder=HashEmbedder(), health_interval_s=0, watch_config=False))
            ctx = app.router.lifespan_context(app)
            await ctx.__aenter__()
            contexts.append(ctx)
            arms[name] = Arm(app)
        arms["learning"].watch_offers()
        rounds: dict[str, list[list[tuple[str, float]]]] = {"learning": [], "plain": []}
        try:
            for name in ("plain", "learning"):  # warm-up, not measured
                await one_round(arms[name], 100, args.clients, args.think_ms, f"warm-{name}", rng)
                await drain(arms["learning"])
            for r in range(args.rounds):
                order = ("learning", "plain") if r % 2 == 0 else ("plain", "learning")
                for name in order if not args.skip_plain else ("learning",):
                    rounds[name].append(await one_round(arms[name], args.requests, args.clients, args.think_ms,
                                                        f"{name}-{r}", rng))
                    await drain(arms["learning"])
            learning = arms["learning"].app.state.gateway.learning
            stats = dict(learning.stats)
            offer_us = time_offer(learning)
        finally:
            for arm in arms.values():
                await arm.client.aclose()
            for ctx in reversed(contexts):
                await ctx.__aexit__(None, None, None)
    shadowed = arms["learning"].shadowed
    split = [(np.array([ms for rid, ms in rnd if rid in shadowed]), np.array([ms for rid, ms in rnd if rid not in shadowed]))
             for rnd in rounds["learning"]]
    # A/A control: the same requests split by a hash unrelated to shadowing; its interval shows what
    # the split itself reads on this machine when there is no difference to find
    halves = [(np.array([ms for rid, ms in rnd if unit_hash(rid, "aa") < 0.5]),
               np.array([ms for rid, ms in rnd if unit_hash(rid, "aa") >= 0.5])) for rnd in rounds["learning"]]
    pairs = [(np.array([ms for _, ms in a]), np.array([ms for _, ms in b]))
             for a, b in zip(rounds["learning"], rounds["plain"])]
    boot = np.random.default_rng(args.seed + 1)
    return {
        "shadowed_vs_not": compare(split, boot, args.bootstrap, ("shadowed", "not_shadowed")),
        "learning_vs_plain": compare(pairs, boot, args.bootstrap, ("learning", "plain")) if pairs else None,
        "aa_control": compare(halves, boot, args.bootstrap, ("half_a", "half_b")),
        "offer_us": offer_us, "learning_stats": stats,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
    }


def time_offer(learning, n: int = 20000) -> float:
    """Microseconds ``offer`` takes on the request path (queue full after the first few: the drop path)."""
    records = [RequestRecord(f"o{i}", time.time(), profile="auto", status=200, cost_usd=1e-6, chosen_expert="a")
               for i in range(n)]  # built before the clock starts
    t0 = time.perf_counter()
    for record in records:
        learning.offer(record, {}, b"")
    return (time.perf_counter() - t0) / n * 1e6


def compare(rounds: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator, B: int,
            names: tuple[str, str]) -> dict:
    """Pooled quantiles of both sides and of their difference, with a cluster-bootstrap 95% interval."""
    a_all = np.concatenate([a for a, _ in rounds])
    b_all = np.concatenate([b for _, b in rounds])
    out = {names[0]: quantiles(a_all), names[1]: quantiles(b_all)}
    diffs = {q: [] for q in QUANTILES}
    for _ in range(B):
        pick = rng.integers(0, len(rounds), len(rounds))
        a = np.concatenate([rounds[i][0] for i in pick])
        b = np.concatenate([rounds[i][1] for i in pick])
        for q in QUANTILES:
            diffs[q].append(np.percentile(a, q) - np.percentile(b, q))
    for q in QUANTILES:
        point = float(np.percentile(a_all, q) - np.percentile(b_all, q))
        lo, hi = np.percentile(diffs[q], [2.5, 97.5])
        out[f"added_p{q}_ms"] = {"estimate": point, "ci95": [float(lo), float(hi)]}
    return out


def quantiles(x: np.ndarray) -> dict:
    return {"n": int(len(x)), "mean_ms": float(np.mean(x)), **{f"p{q}_ms": float(np.percentile(x, q)) for q in QUANTILES}}


def summary(result: dict) -> str:
    lines = []
    for key, (a, b) in (("shadowed_vs_not", ("shadowed", "not_shadowed")), ("learning_vs_plain", ("learning", "plain")),
                        ("aa_control", ("half_a", "half_b"))):
        part = result[key]
        if part is None:
            continue
        lines.append(f"{key}: n={part[a]['n']} vs {part[b]['n']}")
        for q in QUANTILES:
            d = part[f"added_p{q}_ms"]
            lines.append(f"  p{q}: {part[a][f'p{q}_ms']:.3f} vs {part[b][f'p{q}_ms']:.3f} ms, added "
                         f"{d['estimate']:+.3f} ms (95% CI {d['ci95'][0]:+.3f} .. {d['ci95'][1]:+.3f})")
    lines.append(f"offer: {result['offer_us']:.2f} us; shadow jobs queued {result['learning_stats']['queued']}, "
                 f"retrains {result['learning_stats']['retrains']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=20, help="rounds per arm (A/B alternate)")
    p.add_argument("--requests", type=int, default=300, help="requests per round")
    p.add_argument("--clients", type=int, default=2, help="concurrent clients")
    p.add_argument("--think-ms", type=float, default=5.0, help="mean pause of a client between requests")
    p.add_argument("--expert-ms", type=float, default=5.0, help="each expert (and judge) call takes this long")
    p.add_argument("--sample", type=float, default=0.5, help="shadow.sample of the learning gateway")
    p.add_argument("--retrain-every", type=int, default=500, help="retrain.every_labels (and min_labels)")
    p.add_argument("--skip-plain", action="store_true", help="only the learning gateway (shadowed vs not)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    result = asyncio.run(measure(args))
    print(summary(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
