"""Does scraping the experts' engine metrics cost the request path anything? (issue 18's figure)

    python -m eval.capacity.poll_overhead [--rounds 5] [--requests 200]

Two gateways run side by side in front of the same fast expert (eval.capacity.queue_expert with no
service time and plenty of slots, which serves vLLM's metric names): one scrapes the expert's
``/metrics`` every 0.1 s (ten times the default rate, with a latency weight so the estimate is used on
every decision), the other has no engine metrics. Rounds of sequential routed requests alternate
between them (the order swapped each round), and the p50 / p99 of each round's added latency are
compared as a median of per-round figures, so drift on a shared host hits both alike.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from eval.bench.procs import Proc, free_port, python_module

REPO = Path(__file__).resolve().parents[2]


def _config(work: Path, url: str, metrics: bool, tag: str) -> Path:
    expert = {"base_url": url + "/v1", "model": "fast", "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}}
    other = dict(expert, prior_quality=0.4, price=dict(expert["price"]))
    if metrics:
        expert["metrics_url"] = other["metrics_url"] = url + "/metrics"
    config = {"experts": {"a": expert, "b": other}, "routers": {"best": {"type": "strongest"}},
              "profiles": {"auto": {"router": "best", "latency_weight": 0.5 if metrics else 0.0}},
              "logging": {"path": str(work / f"requests-{tag}.db")}, "embedder": {"backend": "auto", "threads": 1},
              "server": {"metrics_poll_s": 0.1, "health_interval_s": 5}}
    path = work / f"experts-{tag}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _round(client: httpx.Client, base: str, n: int) -> list[float]:
    out = []
    body = {"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.post(base + "/v1/chat/completions", json=body)
        out.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return out


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="poll-overhead-"))
    port = free_port()
    procs = [Proc("expert", python_module("eval.capacity.queue_expert", "--port", str(port), "--slots", "1000",
                                          "--service-ms", "0", "--model", "fast"), work, cwd=str(REPO))]
    url = f"http://127.0.0.1:{port}"
    try:
        procs[0].wait_ready(url + "/v1/models")
        bases = {}
        for tag, metrics in (("no_metrics", False), ("metrics_0.1s", True)):
            gport = free_port()
            proc = Proc(f"gateway-{tag}", python_module("router_gateway.cli", "serve", "--config",
                                                         str(_config(work, url, metrics, tag)), "--port", str(gport)),
                        work, cwd=str(REPO))
            procs.append(proc)
            proc.wait_ready(f"http://127.0.0.1:{gport}/ready", timeout=120)
            bases[tag] = f"http://127.0.0.1:{gport}"
        direct: list[float] = []
        figures: dict[str, dict[str, list[float]]] = {t: {"p50": [], "p99": []} for t in bases}
        with httpx.Client(timeout=30) as client:
            for tag in bases:
                _round(client, bases[tag], 20)  # warm connections
            for i in range(args.rounds):
                base_ms = _round(client, url, args.requests)  # the expert alone: subtracted as "added"
                direct.append(statistics.median(base_ms))
                order = list(bases) if i % 2 == 0 else list(reversed(bases))
                for tag in order:
                    ms = _round(client, bases[tag], args.requests)
                    figures[tag]["p50"].append(_pct(ms, 0.5) - direct[-1])
                    figures[tag]["p99"].append(_pct(ms, 0.99) - direct[-1])
    finally:
        for proc in reversed(procs):
            proc.stop()
    print(f"added latency of a routed request (strongest baseline), sequential, median of {args.rounds} "
          f"alternating rounds of {args.requests}; expert alone p50 {statistics.median(direct):.2f} ms")
    print("| gateway | added p50 ms | added p99 ms |\n| --- | --- | --- |")
    for tag, f in figures.items():
        print(f"| {tag} | {statistics.median(f['p50']):.3f} | {statistics.median(f['p99']):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
