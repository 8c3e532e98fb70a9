"""What a cascade costs in time: the verifier's own time and the streamed first byte.

    python -m eval.bench.cascade_verifier [--dense URL] [--moe URL] [--requests N]
        [--learned ARTIFACT TABLE EXPERT [--only-learned]]

1. Verifier time: real answers from the vLLM experts (with logprobs; with n samples), then each
   verifier's ``check`` timed on them (median and 99th percentile over repeats), beside the
   expert call's own time. Target: <= 1 ms beyond the expert call.
2. TTFT: a gateway in front of the two experts; time to the first streamed content byte for a plain
   profile (tokens relayed as they come), a cascade that accepts tier 1 and one that escalates (the
   accepted answer is replayed only after every call and check).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from eval.bench.procs import Proc, free_port, python_module
from router_gateway.cascade.verifiers import (
    CheckContext,
    ConsistencyVerifier,
    LogprobVerifier,
)

PROMPTS = ["What is 2 + 3? Answer with the number only.", "Name the capital of Italy.",
           "What is 7 times 6?", "Is water wet? Answer yes or no.", "Spell the word cat backwards."]


def _call(url: str, model: str, body: dict) -> tuple[dict, float]:
    started = time.perf_counter()
    r = httpx.post(f"{url}/chat/completions", json={"model": model, **body}, timeout=300)
    r.raise_for_status()
    return r.json(), (time.perf_counter() - started) * 1e3


def _time_check(verifier, prompt: str, response: dict, repeats: int = 200) -> tuple[float, float]:
    """(median, 99th percentile) ms of one check."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        verifier.check(prompt, response, CheckContext())
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


def verifier_times(url: str, model: str, n_requests: int) -> None:
    rows = []
    for kind, verifier, extra in (("logprob", LogprobVerifier(), {"logprobs": True, "temperature": 0}),
                                  ("consistency n=3", ConsistencyVerifier(samples=3), {"n": 3, "temperature": 0.7})):
        for prompt in PROMPTS[:n_requests]:
            response, call_ms = _call(url, model, {"messages": [{"role": "user", "content": prompt}],
                                                   "max_tokens": 24, **extra})
            med, worst = _time_check(verifier, prompt, response)
            rows.append((kind, call_ms, med, worst))
    print(f"\n{model} at {url}\n| verifier | expert call ms (median) | check ms (median) | check ms (p99) |")
    print("| --- | --- | --- | --- |")
    for kind in dict.fromkeys(r[0] for r in rows):
        sel = [r for r in rows if r[0] == kind]
        print(f"| {kind} | {statistics.median(r[1] for r in sel):.1f} | "
              f"{statistics.median(r[2] for r in sel):.4f} | {statistics.median(r[3] for r in sel):.4f} |")


def _config(tmp: Path, experts: dict[str, str]) -> Path:
    lines = ["experts:"]
    for i, (name, url) in enumerate(experts.items()):
        lines += [f"  {name}:", f"    base_url: {url}", f"    model: {name}",
                  f"    price: {{input_per_mtok: {0.2 * (i + 1):.2f}, output_per_mtok: {0.8 * (i + 1):.2f}}}",
                  "    context_window: 2048", f"    prior_quality: {0.3 + 0.01 * i:.2f}"]
    lines += ["routers: {cheap: {type: cheapest}, strong: {type: strongest}}", "profiles:",
              "  plain: {router: cheap, cost_weight: 1.0}",
              "  cascade-accept: {router: strong, cost_weight: 0, cascade: {verifier: logprob, threshold: 0.0, "
              "floor: 0}}",
              "  cascade-escalate: {router: strong, cost_weight: 0, cascade: {verifier: logprob, threshold: 0.9999, "
              "floor: 0}}", f"logging: {{path: {tmp / 'requests.db'}}}"]
    path = tmp / "experts.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _ttft(base: str, profile: str, prompt: str) -> tuple[float, float]:
    """(ms to the first content byte, ms to the end) of one streamed request."""
    body = {"model": profile, "messages": [{"role": "user", "content": prompt}], "max_tokens": 24,
            "temperature": 0, "stream": True}
    started, first = time.perf_counter(), None
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=300) as r:
        for line in r.iter_lines():
            if first is None and line.startswith("data: {"):
                delta = (orjson.loads(line[6:]).get("choices") or [{}])[0].get("delta") or {}
                if delta.get("content"):
                    first = time.perf_counter()
    end = time.perf_counter()
    return ((first or end) - started) * 1e3, (end - started) * 1e3


def ttft_table(experts: dict[str, str], n_requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = _config(Path(tmp), experts)
        cmd = python_module("router_gateway.cli", "serve", "--config", str(config), "--port", str(port))
        proc = Proc("gateway", cmd,
                    Path(tmp), env={"ROUTER_GATEWAY_HOME": tmp})
        try:
            proc.wait_ready(f"http://127.0.0.1:{port}/ready")
            base = f"http://127.0.0.1:{port}"
            print("\nstreamed TTFT through the gateway (max_tokens 24)\n| profile | TTFT ms (median) | "
                  "total ms (median) |\n| --- | --- | --- |")
            for profile in ("plain", "cascade-accept", "cascade-escalate"):
                _ttft(base, profile, PROMPTS[0])  # warm the path
                runs = [_ttft(base, profile, p) for p in PROMPTS[:n_requests]]
                print(f"| {profile} | {statistics.median(r[0] for r in runs):.0f} | "
                      f"{statistics.median(r[1] for r in runs):.0f} |")
        finally:
            proc.stop()


def learned_times(artifact: str, table: str, expert: str, n: int = 300) -> None:
    """The learned verifier's check on a table's recorded answers (no expert call needed)."""
    import csv
    import sys

    from router_gateway.cascade.learned import LearnedVerifier

    csv.field_size_limit(sys.maxsize)
    verifier = LearnedVerifier.load(artifact)
    with open(table, newline="", encoding="utf-8") as f:
        rows = [r for _, r in zip(range(n), csv.DictReader(f))]
    times = []
    for row in rows:
        response = {"choices": [{"message": {"content": row[f"answer:{expert}"]}}]}
        t0 = time.perf_counter()
        verifier.check(row["prompt"], response, CheckContext(expert))
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    print(f"\nlearned verifier {artifact} on {len(rows)} answers of {expert}: check ms median "
          f"{statistics.median(times):.3f}, p99 {times[int(0.99 * (len(times) - 1))]:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dense", default="http://127.0.0.1:8101/v1")
    p.add_argument("--moe", default="http://127.0.0.1:8102/v1")
    p.add_argument("--requests", type=int, default=5)
    p.add_argument("--learned", nargs=3, metavar=("ARTIFACT", "TABLE", "EXPERT"),
                   help="also time a learned verifier on a table's answers; with --only-learned, only that")
    p.add_argument("--only-learned", action="store_true")
    args = p.parse_args()
    if args.learned:
        learned_times(*args.learned)
        if args.only_learned:
            return
    experts = {"smollm2-dense": args.dense.rstrip("/"), "smollm2-moe": args.moe.rstrip("/")}
    for name, url in experts.items():
        verifier_times(url, name, args.requests)
    ttft_table(experts, args.requests)


if __name__ == "__main__":
    main()
