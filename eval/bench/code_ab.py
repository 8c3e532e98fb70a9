"""The whole gateway, two versions of the code side by side: ``git rev`` against the working tree.

Both gateways run the same config, router artifact and stub experts at once; each round measures
them alternately (the order flips every round), so load that drifts on a shared host hits both alike.
Per round and version: routed saturation (concurrency 64, zero-delay stub), routed added latency at
concurrency 32 (20 ms stub, minus the stub alone), and the gateway's CPU per request. Compare by the
median of per-round figures.

    python -m eval.bench.code_ab --base HEAD~1 [--embedder static-tuned] [--rounds 3] [--json OUT]

(static-tuned needs its table built first: see the README's "Tuned static embedder".)
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from eval.bench import procs
from eval.bench.runner import BenchOptions, Bench, loadgen, say
from eval.bench.scenario import gateway_config, train_router

REPO = Path(__file__).resolve().parents[2]


def start(bench: Bench, name: str, config: Path, cwd: Path) -> str:
    """A one-worker gateway running the code under ``cwd`` (``python -m`` imports from there first)."""
    port = procs.free_port()
    cmd = procs.python_module("router_gateway.cli", "serve", "--config", str(config), "--port", str(port),
                              "--workers", "1", "--log-level", "warning")
    bench.procs[name] = procs.Proc(name, cmd, bench.work, env={"ROUTER_GATEWAY_BENCH": "1"}, cwd=str(cwd))
    url = f"http://127.0.0.1:{port}"
    bench.procs[name].wait_ready(url + "/ready", 120)
    return url


def measured(bench: Bench, name: str, url: str, model: str, concurrency: int, duration: float) -> dict:
    pid = bench.procs[name].pid
    cpu0 = procs.cpu_seconds(pid)
    summary = loadgen(url + "/v1/chat/completions", model, concurrency, duration, False)
    done = max(1, summary.get("n", 0))
    summary["gateway_cpu_ms_per_request"] = (procs.cpu_seconds(pid) - cpu0) * 1e3 / done
    return summary


def score_batches(url: str) -> dict | None:
    """Prompts per router scoring call over the whole run, from /metrics (None: a version without it)."""
    import httpx
    response = httpx.get(url + "/metrics", timeout=10)  # open to a loopback caller (no keys in the config)
    if response.status_code != 200:
        return None
    text = response.text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("router_gateway_score_batch_size_") and " " in line}
    calls, prompts = values.get("router_gateway_score_batch_size_count"), values.get("router_gateway_score_batch_size_sum")
    if not calls:
        return None
    return {"calls": int(calls), "prompts": int(prompts), "mean": round(prompts / calls, 2)}


def run(base: str, embedder: str, rounds: int, duration: float, saturation_s: float = 8.0) -> dict:
    opts = BenchOptions(embedder=embedder, litellm=False, duration=duration)
    bench = Bench(opts)
    tree = Path(tempfile.mkdtemp(prefix="router-gateway-ab-")) / "base"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), base], check=True,
                   capture_output=True)
    rev = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], check=True,
                         capture_output=True, text=True).stdout.strip()
    out: dict = {"base": rev, "embedder": embedder, "rounds": []}
    try:
        bench.start_stubs()
        model = __import__("router_gateway.embedding.factory", fromlist=["make_embedder"]).make_embedder(embedder)
        router_type = train_router(model, bench.work / "routers")
        del model
        config = gateway_config(bench.urls["stub"], bench.urls["stub-fast"], bench.work, router_type, 1, embedder)
        out["router"] = router_type
        urls = {"base": start(bench, "base", config, tree), "new": start(bench, "new", config, REPO)}
        for r in range(rounds):
            row: dict = {}
            direct = loadgen(bench.urls["stub"] + "/v1/chat/completions", "stub-model", 32, duration, False)
            for name in (["base", "new"] if r % 2 == 0 else ["new", "base"]):
                sat = measured(bench, name, urls[name], "auto-fast", opts.saturation_concurrency, saturation_s)
                lat = measured(bench, name, urls[name], "auto", 32, duration)
                row[name] = {"saturation_rps": sat["rps"], "saturation_errors": sat["errors"],
                             "cpu_ms_per_request": sat["gateway_cpu_ms_per_request"],
                             "added_p50_ms": lat["p50"] - direct["p50"], "added_p99_ms": lat["p99"] - direct["p99"]}
                say(opts, f"round {r + 1}/{rounds} {name:<4} saturation {sat['rps']:7.1f} req/s  "
                          f"CPU {sat['gateway_cpu_ms_per_request']:.3f} ms/req  c=32 added p50 "
                          f"{row[name]['added_p50_ms']:.2f} ms p99 {row[name]['added_p99_ms']:.2f} ms")
            out["rounds"].append(row)
        out["score_batches"] = {name: score_batches(url) for name, url in urls.items()}
    finally:
        bench.close()
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(tree.parent, ignore_errors=True)
    out["median"] = {name: {key: float(np.median([row[name][key] for row in out["rounds"]]))
                            for key in ("saturation_rps", "cpu_ms_per_request", "added_p50_ms", "added_p99_ms")}
                     for name in ("base", "new")}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="HEAD", help="git revision to compare the working tree against")
    p.add_argument("--embedder", default="static-tuned", choices=["onnx", "static", "static-tuned", "torch"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds of each c=32 latency run")
    p.add_argument("--saturation-s", type=float, default=8.0, help="seconds of each saturation run")
    p.add_argument("--json", help="write the result here")
    args = p.parse_args(argv)
    result = run(args.base, args.embedder, args.rounds, args.duration, args.saturation_s)
    print(json.dumps(result["median"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
