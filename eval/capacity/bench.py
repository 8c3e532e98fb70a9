"""Capacity-aware routing against ``max_concurrency`` alone, on the same traffic (issue 18's figure).

    python -m eval.capacity.bench [--seconds 30] [--rate 10] [--latency-weights 0.1,0.3,1]

Two queueing experts (eval.capacity.queue_expert: a fixed number of slots, FIFO queue, vLLM's metric
names) stand for two models; a kNN router trained on two of ``llmrouter``'s models (the best one is
"strong", the runner-up "weak"; folds 1-4, all-MiniLM-L6-v2) predicts each prompt's quality at each.
Outside load (other clients, not through the gateway) keeps the strong expert's slots full. The
gateway then receives the held-out fold's prompts at a fixed rate (open loop, seeded order), once per
setting:

- ``max_concurrency`` alone: no engine metrics (today's behaviour);
- engine metrics with each ``latency_weight``: the same traffic, the gateway reading both experts'
  ``/metrics``.

For each run it prints latency percentiles (client-measured, through the gateway), the share sent to
each expert, and the predicted quality served (mean router score of the chosen expert, from the
gateway's request log), so what a latency gain costs in predicted quality is on the same line.
With ``--vllm DENSE_URL,MOE_URL`` the two experts are real vLLM servers instead (the first is the
one loaded by outside load; router: the `strongest` baseline by prior_quality).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from eval.bench.procs import Proc, free_port, python_module
from router_gateway.domain.record import RequestRecord

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO.parent / "shared" / "data" / "bench" / "llmrouter.csv"


def train_two_model_router(work: Path) -> tuple[list[str], str]:
    """kNN on llmrouter's two best models (folds 1-4); returns held-out prompts and the artifact dir."""
    from eval.harness import embed_table
    from eval.tables import load_eval_table
    from routers.artifact import save_artifact
    from routers.registry import make_router
    table = load_eval_table(TABLE)
    X = embed_table(table)
    best = np.argsort(-table.scores.mean(axis=0))[:2]
    train, test = table.folds != 0, table.folds == 0
    router = make_router("knn").fit(X[train], table.scores[train][:, best], experts=["strong", "weak"])
    out = work / "router"
    save_artifact(router, out, embedder={"name": "all-MiniLM-L6-v2", "dim": 384})
    print(f"router: knn on {table.models[best[0]]} (strong) and {table.models[best[1]]} (weak), "
          f"{int(train.sum())} training prompts", file=sys.stderr)
    return [p for p, t in zip(table.prompts, test) if t], str(out)


def write_config(work: Path, urls: dict[str, str], router: dict, latency_weight: float | None,
                 tag: str) -> Path:
    """experts.yaml for one run; latency_weight None = no engine metrics (max_concurrency alone)."""
    experts = {}
    for i, (name, url) in enumerate(urls.items()):
        experts[name] = {"base_url": url, "model": name, "max_concurrency": 8,
                         "price": {"input_per_mtok": 0.2 - 0.1 * i, "output_per_mtok": 0.4 - 0.2 * i},
                         "prior_quality": 0.6 - 0.1 * i, "context_window": 32768,
                         "timeout": {"connect": 3, "first_byte": 120, "total": 300}}
        if latency_weight is not None:
            experts[name]["metrics_url"] = url.rsplit("/v1", 1)[0] + "/metrics"
    profile = {"router": "default", "cost_weight": 0.0, "latency_weight": latency_weight or 0.0}
    config = {"experts": experts, "routers": {"default": router}, "profiles": {"auto": profile},
              "embedder": {"backend": "auto", "threads": 1},
              "logging": {"path": str(work / f"requests-{tag}.db"), "flush_interval_ms": 100},
              "server": {"metrics_poll_s": 0.5, "health_interval_s": 2}}
    path = work / f"experts-{tag}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def outside_load(url: str, model: str, concurrency: int, stop: asyncio.Event, max_tokens: int) -> int:
    """Clients that do not go through the gateway: back-to-back requests straight to the expert."""
    sent = 0

    async def loop(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while not stop.is_set():
            try:
                await client.post(f"{url}/chat/completions", json={
                    "model": model, "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": "Count from one to twenty."}]})
                sent += 1
            except httpx.HTTPError:
                await asyncio.sleep(0.1)

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        await asyncio.gather(*(loop(client) for _ in range(concurrency)))
    return sent


async def gateway_traffic(base: str, prompts: list[str], rate: float, seconds: float, max_tokens: int) -> list[dict]:
    """Open loop: one request every 1/rate s, whatever the answers' latency."""
    results: list[dict] = []

    async def one(client: httpx.AsyncClient, prompt: str) -> None:
        t0 = time.perf_counter()
        try:
            r = await client.post(f"{base}/v1/chat/completions", json={
                "model": "auto", "max_tokens": max_tokens, "messages": [{"role": "user", "content": prompt}]})
            results.append({"latency": time.perf_counter() - t0, "status": r.status_code,
                            "expert": r.headers.get("x-router-expert")})
        except httpx.HTTPError as exc:
            results.append({"latency": time.perf_counter() - t0, "status": 599, "expert": None,
                            "error": type(exc).__name__})

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=512)) as client:
        tasks, start = [], time.perf_counter()
        for i in range(int(seconds * rate)):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(client, prompts[i % len(prompts)])))
        await asyncio.gather(*tasks)
    return results


async def expert_floor(urls: dict[str, str], prompts: list[str], n: int, max_tokens: int) -> dict[str, dict]:
    """Each expert's own latency, one request at a time and nothing else sent to it: no routing can
    serve faster than this on the host as it is (other work on the host included)."""
    out = {}
    async with httpx.AsyncClient(timeout=300) as client:
        for name, url in urls.items():
            latencies = []
            for prompt in prompts[:n]:
                t0 = time.perf_counter()
                r = await client.post(f"{url}/chat/completions", json={
                    "model": name, "max_tokens": max_tokens, "messages": [{"role": "user", "content": prompt}]})
                r.raise_for_status()
                latencies.append((time.perf_counter() - t0) * 1000)
            out[name] = {"n": len(latencies), "p50_ms": float(np.percentile(latencies, 50)),
                         "p95_ms": float(np.percentile(latencies, 95)), "load_average": os.getloadavg()[0]}
    return out


def served_quality(db: Path) -> tuple[float, int]:
    """Mean router score of the expert that answered, over the run's successful requests."""
    rows = sqlite3.connect(db).execute("SELECT data FROM requests").fetchall()
    scores = []
    for (data,) in rows:
        rec = RequestRecord.from_row(json.loads(data))
        if rec.status != 200:
            continue
        by_name = {c["expert"]: c["score"] for c in rec.candidates or []}
        if rec.chosen_expert in by_name:
            scores.append(by_name[rec.chosen_expert])
    return (float(np.mean(scores)) if scores else float("nan")), len(scores)


async def run_once(work: Path, tag: str, urls: dict[str, str], router: dict, latency_weight: float | None,
                   prompts: list[str], args) -> dict:
    return (await run_together(work, [(tag, latency_weight)], urls, router, prompts, args))[0]


async def run_together(work: Path, settings: list[tuple[str, float | None]], urls: dict[str, str], router: dict,
                       prompts: list[str], args) -> list[dict]:
    """One gateway per setting, all at once: each gets the same open-loop traffic at the same instants,
    under the same outside load and the same unrelated load on the host."""
    gateways = []
    try:
        for tag, weight in settings:
            config, port = write_config(work, urls, router, weight, tag), free_port()
            gateways.append((Proc(f"gateway-{tag}", python_module("router_gateway.cli", "serve", "--config",
                                                                  str(config), "--port", str(port)),
                                  work, cwd=str(REPO)), port))
        for gw, port in gateways:
            gw.wait_ready(f"http://127.0.0.1:{port}/ready", timeout=180)
        stop = asyncio.Event()
        strong_name, strong_url = next(iter(urls.items()))
        load = asyncio.create_task(outside_load(strong_url, strong_name, args.outside, stop, args.max_tokens))
        await asyncio.sleep(args.warmup)  # the queue builds and the poller sees it
        load_before = os.getloadavg()[0]  # other work on the host slows every expert: say how much there was
        results = await asyncio.gather(*(gateway_traffic(f"http://127.0.0.1:{port}", prompts, args.rate,
                                                         args.seconds, args.max_tokens) for _, port in gateways))
        stop.set()
        outside_sent = await load
        load_after = os.getloadavg()[0]
        await asyncio.sleep(0.5)  # the last log batch
    finally:
        for gw, _ in gateways:
            gw.stop()
    return [summarize(work, tag, weight, urls, res, outside_sent, [load_before, load_after])
            for (tag, weight), res in zip(settings, results)]


def summarize(work: Path, tag: str, latency_weight: float | None, urls: dict[str, str], results: list[dict],
              outside_sent: int, load_average: list[float]) -> dict:
    ok = [r for r in results if r["status"] == 200]
    lat = np.array([r["latency"] for r in ok]) * 1000
    quality, n_logged = served_quality(work / f"requests-{tag}.db")
    share = {name: sum(r["expert"] == name for r in ok) / max(1, len(ok)) for name in urls}
    return {"setting": tag, "latency_weight": latency_weight, "requests": len(results), "ok": len(ok),
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)), "share": share, "predicted_quality": quality,
            "logged": n_logged, "outside_requests": outside_sent, "load_average": load_average}


def start_queue_experts(work: Path, args) -> tuple[dict[str, str], list[Proc]]:
    urls, procs = {}, []
    for name in ("strong", "weak"):
        port = free_port()
        proc = Proc(f"expert-{name}", python_module("eval.capacity.queue_expert", "--port", str(port),
                                                    "--slots", str(args.slots), "--service-ms",
                                                    str(args.service_ms), "--model", name), work, cwd=str(REPO))
        procs.append(proc)
        proc.wait_ready(f"http://127.0.0.1:{port}/v1/models")
        urls[name] = f"http://127.0.0.1:{port}/v1"
    return urls, procs


async def main_async(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="capacity-bench-"))
    procs: list[Proc] = []
    try:
        if args.vllm:
            strong, weak = args.vllm.split(",")
            urls = {_served_name(strong): strong.rstrip("/"), _served_name(weak): weak.rstrip("/")}
            router = {"type": "strongest"}
            prompts = [f"Name a fruit that starts with the letter {c}." for c in "ABCDEFGHIKLMNOPRSTW"]
        else:
            urls, procs = start_queue_experts(work, args)
            prompts, artifact = train_two_model_router(work)
            router = {"type": "knn", "artifact": artifact}
        prompts = [prompts[i] for i in np.random.default_rng(0).permutation(len(prompts))]
        floor = await expert_floor(urls, prompts, args.floor, args.max_tokens) if args.floor else None
        settings = [("max_concurrency", None)] + [(f"engine_metrics_lw{w:g}", w) for w in args.latency_weights]
        if args.together:
            runs = await run_together(work, settings, urls, router, prompts, args)
        else:
            runs = [await run_once(work, tag, urls, router, weight, prompts, args) for tag, weight in settings]
        return {"experts": list(urls), "vllm": bool(args.vllm), "rate": args.rate, "seconds": args.seconds,
                "together": args.together,
                "outside_concurrency": args.outside, "runs": runs, "floor": floor}
    finally:
        for proc in procs:
            proc.stop()


def _served_name(url: str) -> str:
    return httpx.get(url.rstrip("/") + "/models", timeout=5).json()["data"][0]["id"]


def report(out: dict) -> str:
    base = out["runs"][0]["p95_ms"]
    how = "all settings at once, each through its own gateway" if out.get("together") else "one setting after another"
    lines = [f"{out['rate']} req/s through the gateway for {out['seconds']} s ({how}); outside load: "
             f"{out['outside_concurrency']} clients straight to {out['experts'][0]}", "",
             "| setting | ok | p50 ms | p95 ms | p99 ms | p95 vs max_concurrency | share " + " / ".join(out["experts"])
             + " | predicted quality served | host load average (start, end) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in out["runs"]:
        shares = " / ".join(f"{r['share'][e]:.2f}" for e in out["experts"])
        lines.append(f"| {r['setting']} | {r['ok']}/{r['requests']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
                     f"{r['p99_ms']:.0f} | {r['p95_ms'] / base - 1:+.1%} | {shares} | {r['predicted_quality']:.4f} | "
                     + (" / ".join(f"{x:.1f}" for x in r["load_average"]) if "load_average" in r else "n/a") + " |")
    for name, f in (out.get("floor") or {}).items():
        lines.append(f"\n{name} alone (one request at a time, no outside load, host load average "
                     f"{f['load_average']:.1f}): p50 {f['p50_ms']:.0f} ms, p95 {f['p95_ms']:.0f} ms over {f['n']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--rate", type=float, default=3.0, help="gateway requests per second")
    ap.add_argument("--outside", type=int, default=8, help="outside clients loading the strong expert")
    ap.add_argument("--slots", type=int, default=4)
    # long service times keep the figures about queueing, not about CPU scheduling on a small host
    ap.add_argument("--service-ms", type=float, default=1000.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--latency-weights", type=lambda s: [float(x) for x in s.split(",")], default=[0.1, 0.3, 1.0])
    ap.add_argument("--vllm", help="DENSE_URL,MOE_URL: real vLLM experts (the first gets the outside load)")
    ap.add_argument("--together", action="store_true",
                    help="run every setting at once (one gateway each, the same traffic to each): the settings "
                         "then share the host's unrelated load instead of meeting different moments of it")
    ap.add_argument("--floor", type=int, default=0,
                    help="first time N requests to each expert alone (the latency no routing can beat)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    out = asyncio.run(main_async(args))
    print(report(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
