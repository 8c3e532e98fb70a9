"""Session affinity against real vLLM experts: prefix-cache hit rate and time to first token per turn.

    python -m eval.affinity_prefix_cache --experts http://127.0.0.1:8111/v1,http://127.0.0.1:8112/v1

Starts a gateway (a subprocess on a free port) in front of two vLLM servers serving the same model (so
only caching differs between them), then plays one 10-turn conversation twice through the Responses API,
streamed: through profile ``auto`` (affinity on) and ``auto-noaffinity`` (affinity off). Every turn sends
``x-router-cost-weight`` alternating 1000 / 0, so the policy alone alternates between the cheap and the
strong expert; with affinity the session keeps the expert of its first turn.

Per turn it prints the expert, the prefix-cache hit rate from the experts' ``/metrics`` (the change in
``vllm:prefix_cache_hits_total`` / ``vllm:prefix_cache_queries_total`` over the turn, summed over both
servers; older names are read too), the same from the answer's ``usage.input_tokens_details.cached_tokens``
(a per-request cross-check that other traffic on the servers cannot disturb) and the client-side time to
the first text delta. Each run's system prompt carries a fresh nonce, so no run reuses another's cache.
The servers must not serve other traffic meanwhile for the /metrics figures to be exact.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson

HITS = ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits_total",
        "vllm:cpu_prefix_cache_hits_total")
QUERIES = ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries_total",
           "vllm:cpu_prefix_cache_queries_total")
#: a long system prompt, as coding agents and assistants send (a few hundred words of instructions)
SYSTEM = ("You are a meticulous travel planner for a small agency. Plans must be realistic: check opening "
          "hours, walking distances and public transport; prefer local food; keep a budget column; mark "
          "reservations needed; note accessibility. Answer briefly; the client will ask follow-ups. ") * 9
ASKS = ["Plan a first day in Lisbon for two adults who like museums and seafood.",
        "Swap the afternoon museum for something outdoors with a view of the river.",
        "Make the lunch option cheaper, under fifteen euros a person, near the tram line.",
        "Add a rainy-day alternative for the morning that does not need a reservation.",
        "Which of these places are closed on Mondays? Adjust the plan for a Monday.",
        "Add a second day in Sintra; we will take the train from Rossio in the morning.",
        "We want to avoid the biggest crowds at Pena Palace. When should we arrive?",
        "Replace dinner on day two with a place that has vegetarian options.",
        "Summarise the budget for both days per person, including transport tickets.",
        "Give me the final plan as a short checklist of bookings to make this week."]


def metric(text: str, names: tuple[str, ...]) -> float:
    """Sum of a counter over its label sets, by the first name the server exports."""
    for name in names:
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith(name + "{") or line.startswith(name + " ")]
        if values:
            return sum(values)
    return float("nan")


def cache_counters(urls: list[str]) -> tuple[float, float]:
    hits = queries = 0.0
    for url in urls:
        text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=10).text
        hits += metric(text, HITS)
        queries += metric(text, QUERIES)
    return hits, queries


def write_config(path: Path, urls: list[str], models: list[str]) -> None:
    lines = ["experts:"]
    for name, url, model, price, prior in zip(("expert-a", "expert-b"), urls, models, (0.1, 1.0), (0.5, 0.9)):
        lines += [f"  {name}: {{base_url: {url}, model: {model}, context_window: 2048, prior_quality: {prior}, "
                  f"price: {{input_per_mtok: {price}, output_per_mtok: {price}}}, "
                  "timeout: {connect: 3, first_byte: 300, total: 600}}"]
    lines += ["routers: {strong: {type: strongest}}",
              "profiles:", "  auto: {router: strong, cost_weight: 0.5}",
              "  auto-noaffinity: {router: strong, cost_weight: 0.5, affinity: {enabled: false}}",
              f"logging: {{path: {path.parent / 'requests.db'}}}", "embedder: {backend: auto, threads: 1}",
              "server: {health_interval_s: 30}"]
    path.write_text("\n".join(lines) + "\n")


def start_gateway(config: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(config.parent / "gateway.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "router_gateway.cli", "serve", "--config", str(config),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "ROUTER_GATEWAY_HOME": str(config.parent)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"gateway did not start: {(config.parent / 'gateway.log').read_text()[-2000:]}")


def one_turn(client: httpx.Client, profile: str, history: list[dict], turn: int, max_tokens: int) -> dict:
    """Stream one turn; returns expert, affinity, TTFT (s), answer text and usage."""
    body = {"model": profile, "input": history, "max_output_tokens": max_tokens, "temperature": 0,
            "stream": True, "store": False}
    headers = {"x-router-cost-weight": "1000" if turn % 2 else "0"}
    started, ttft, text, usage = time.perf_counter(), None, [], {}
    with client.stream("POST", "/v1/responses", json=body, headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            event = orjson.loads(line[5:])
            if event.get("type") == "response.output_text.delta":
                ttft = ttft or time.perf_counter() - started
                text.append(event.get("delta", ""))
            elif event.get("type") == "response.completed":
                usage = event["response"].get("usage") or {}
    return {"expert": response.headers.get("x-router-expert"), "affinity": response.headers.get("x-router-affinity"),
            "ttft_s": ttft if ttft is not None else time.perf_counter() - started, "text": "".join(text),
            "usage": usage}


def conversation(gateway: str, urls: list[str], profile: str, turns: int, max_tokens: int) -> list[dict]:
    history = [{"role": "system", "content": f"[run {uuid.uuid4().hex}] " + SYSTEM}]
    rows = []
    with httpx.Client(base_url=gateway, timeout=600) as client:
        for turn in range(1, turns + 1):
            history.append({"role": "user", "content": ASKS[(turn - 1) % len(ASKS)]})
            before = cache_counters(urls)
            result = one_turn(client, profile, history, turn, max_tokens)
            after = cache_counters(urls)
            queried = after[1] - before[1]
            details = result["usage"].get("input_tokens_details") or {}
            result.update(turn=turn, metrics_hit_rate=(after[0] - before[0]) / queried if queried else float("nan"),
                          usage_hit_rate=(details.get("cached_tokens") or 0) / max(1, result["usage"].get("input_tokens", 1)),
                          input_tokens=result["usage"].get("input_tokens"))
            rows.append(result)
            history.append({"role": "assistant", "content": result["text"] or "(no answer)"})
    return rows


def report(name: str, rows: list[dict]) -> dict:
    print(f"\n{name}")
    print(f"{'turn':>4} {'expert':>9} {'affinity':>9} {'prompt':>6} {'hit(/metrics)':>13} {'hit(usage)':>10} {'ttft_ms':>8}")
    for r in rows:
        print(f"{r['turn']:>4} {r['expert']:>9} {r['affinity'] or '-':>9} {r['input_tokens']:>6} "
              f"{r['metrics_hit_rate']:>13.3f} {r['usage_hit_rate']:>10.3f} {r['ttft_s'] * 1e3:>8.0f}")
    later = rows[1:]
    summary = {"experts": sorted({r["expert"] for r in rows}),
               "min_hit_rate_turn2on_metrics": min(r["metrics_hit_rate"] for r in later),
               "mean_hit_rate_turn2on_metrics": statistics.fmean(r["metrics_hit_rate"] for r in later),
               "min_hit_rate_turn2on_usage": min(r["usage_hit_rate"] for r in later),
               "median_ttft_ms": statistics.median(r["ttft_s"] for r in rows) * 1e3,
               "median_ttft_ms_turn2on": statistics.median(r["ttft_s"] for r in later) * 1e3}
    print("summary: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experts", default="http://127.0.0.1:8111/v1,http://127.0.0.1:8112/v1",
                        help="two vLLM base URLs serving the same model, used by nothing else meanwhile")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    urls = [u.rstrip("/") for u in args.experts.split(",")]
    models = [httpx.get(u + "/models", timeout=10).json()["data"][0]["id"] for u in urls]
    with tempfile.TemporaryDirectory(prefix="affinity-eval-") as tmp:
        config = Path(tmp) / "experts.yaml"
        write_config(config, urls, models)
        proc, gateway = start_gateway(config)
        try:
            on = report("affinity on (profile auto)", conversation(gateway, urls, "auto", args.turns, args.max_tokens))
            off = report("affinity off, experts alternate (profile auto-noaffinity)",
                         conversation(gateway, urls, "auto-noaffinity", args.turns, args.max_tokens))
        finally:
            proc.terminate()
            proc.wait(30)
    ok_hits = on["min_hit_rate_turn2on_metrics"] >= 0.8
    ok_ttft = on["median_ttft_ms"] < off["median_ttft_ms"]
    print(f"\ntarget hit rate >= 0.8 from turn 2 on (affinity, /metrics): {'met' if ok_hits else 'NOT met'} "
          f"(min {on['min_hit_rate_turn2on_metrics']:.3f}); lower median TTFT with affinity: "
          f"{'met' if ok_ttft else 'NOT met'} ({on['median_ttft_ms']:.0f} ms vs {off['median_ttft_ms']:.0f} ms)")


if __name__ == "__main__":
    main()
