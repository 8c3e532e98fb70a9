"""Greedy decode speed of the running vLLM-CPU experts (stdlib only; any python).

    python deploy/cpu/bench.py [--tokens 128] [--runs 3] [name=url ...]

Default targets: smollm2-dense=http://127.0.0.1:8101/v1 smollm2-moe=http://127.0.0.1:8102/v1 (and
gemma3-270m=http://127.0.0.1:8103/v1 when it answers). Each run is one chat completion with temperature 0
and ignore_eos, so exactly --tokens tokens are generated; prints time to first token (streamed), tokens/s
over the whole request and decode tokens/s after the first token.
"""
from __future__ import annotations

import argparse
import json
import time
import urllib.request

DEFAULTS = {"smollm2-dense": "http://127.0.0.1:8101/v1", "smollm2-moe": "http://127.0.0.1:8102/v1",
            "gemma3-270m": "http://127.0.0.1:8103/v1"}
PROMPT = "Write a short story about a robot who learns to paint."


def up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=2):
            return True
    except OSError:
        return False


def one(url: str, model: str, tokens: int) -> tuple[float, float, int]:
    """(time to first token, total seconds, completion tokens) of one streamed greedy completion."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": tokens,
                       "temperature": 0, "ignore_eos": True, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(f"{url}/chat/completions", body, {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    first, n = None, 0
    with urllib.request.urlopen(req, timeout=600) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and any((c.get("delta") or {}).get("content") for c in chunk.get("choices", [])):
                first = time.perf_counter() - t0
            if chunk.get("usage"):
                n = chunk["usage"]["completion_tokens"]
    return first or 0.0, time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("targets", nargs="*", help="name=url")
    args = ap.parse_args()
    targets = dict(t.split("=", 1) for t in args.targets) if args.targets else DEFAULTS
    for name, url in targets.items():
        if not up(url):
            print(f"{name:14s} {url}: down")
            continue
        one(url, name, 8)  # warm-up
        results = [one(url, name, args.tokens) for _ in range(args.runs)]
        ttft = sum(r[0] for r in results) / len(results)
        total = sum(r[1] for r in results)
        n = sum(r[2] for r in results)
        decode = sum(r[2] - 1 for r in results) / sum(r[1] - r[0] for r in results)
        print(f"{name:14s} {n // len(results)} tokens x{len(results)}: {n / total:6.1f} tok/s overall, "
              f"{decode:6.1f} tok/s decode, TTFT {ttft * 1000:.0f} ms")


if __name__ == "__main__":
    main()
