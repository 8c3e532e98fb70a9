"""Soak benchmark: many concurrent streaming requests through a real gateway while upstream calls fail.

Starts two fake experts that fail ``--fail-rate`` of their calls (half answer 500 before the first
byte, half of the streams die after the first chunk), a gateway in front of them, and a closed-loop
client of ``--concurrency`` streaming requests for ``--duration`` seconds. Then it checks:

- every request ended in a complete answer or a correct error (an OpenAI-shaped error body, or a
  final SSE error event followed by ``[DONE]``): ``incorrect`` must be 0;
- the request log holds exactly one record per request sent;
- gateway RSS growth after warm-up (the first ``--warmup`` fraction of the run) stays under 10%.

Prints requests/s, outcome counts and RSS, and writes them as JSON (``--out``).

    python -m eval.soak --duration 60 --concurrency 100 --fail-rate 0.1
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [f"Question {i}: explain topic number {i} in one sentence." for i in range(64)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import httpx
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def start_expert(name: str, fail_rate: float) -> tuple[subprocess.Popen, str]:
    """The test suite's fake expert, with its fail<N> behaviour (a separate process)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.fake_expert", "--port", str(port),
                             "--name", name, "--behaviour", f"fail{fail_rate * 100:g}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/_stats", proc)
    return proc, url


def write_config(path: Path, experts: dict[str, str], concurrency: int) -> Path:
    lines = ["experts:"]
    for i, (name, url) in enumerate(experts.items()):
        lines += [f"  {name}: {{base_url: {url}/v1, model: {name}, prior_quality: {0.6 - 0.1 * i},",
                  f"    price: {{input_per_mtok: 0.1, output_per_mtok: 0.2}}, max_concurrency: {concurrency},",
                  "    timeout: {connect: 2, first_byte: 10, total: 60}}"]
    lines += ["routers: {strong: {type: strongest}}", "profiles: {auto: {router: strong, cost_weight: 0}}",
              f"logging: {{path: {path.parent / 'requests.db'}, flush_interval_ms: 200}}",
              "embedder: {backend: auto, threads: 1}",
              "server: {max_attempts: 3, health_interval_s: 2, breaker: {failure_threshold: 5, cooldown_s: 2}}"]
    path.write_text("\n".join(lines) + "\n")
    return path


async def one_request(client, url: str, i: int) -> tuple[str, str | None]:
    """Returns (outcome, request id). Outcomes: ok, stream_error, http_<status>, incorrect:<why>."""
    import orjson
    body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]}
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            raw = await r.aread()
            rid = r.headers.get("x-request-id")
            if r.status_code != 200:
                error = orjson.loads(raw).get("error", {})
                shaped = set(error) == {"message", "type", "param", "code"}
                return (f"http_{r.status_code}" if shaped else f"incorrect:unshaped_{r.status_code}"), rid
    except Exception as exc:  # noqa: BLE001 - any client-side failure is a wrong outcome
        return f"incorrect:{type(exc).__name__}", None
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    if not events or events[-1] != b"data: [DONE]":
        return "incorrect:no_done", rid
    payloads = [orjson.loads(e[6:]) for e in events[:-1]]
    if any("error" in p for p in payloads):
        return ("stream_error" if "error" in payloads[-1] else "incorrect:error_not_last"), rid
    finished = any(c.get("finish_reason") == "stop" for p in payloads for c in p.get("choices", []))
    text = "".join(c["delta"].get("content") or "" for p in payloads for c in p.get("choices", []))
    return ("ok" if finished and text.startswith("answer from") else "incorrect:truncated"), rid


async def drive(url: str, concurrency: int, duration: float, gateway_pid: int, warmup: float) -> dict:
    import httpx
    outcomes: Counter = Counter()
    ids: list[str] = []
    rss: list[tuple[float, int]] = []
    start = time.monotonic()
    stop_at = start + duration
    counter = iter(range(10 ** 9))

    async def worker(client):
        while time.monotonic() < stop_at:
            outcome, rid = await one_request(client, url, next(counter))
            outcomes[outcome] += 1
            if rid:
                ids.append(rid)

    async def sample():
        while time.monotonic() < stop_at:
            rss.append((time.monotonic() - start, rss_kb(gateway_pid)))
            await asyncio.sleep(1.0)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(sample(), *(worker(client) for _ in range(concurrency)))
    elapsed = time.monotonic() - start
    after_warmup = [kb for t, kb in rss if t >= duration * warmup] or [rss[-1][1]]
    base, final, peak = after_warmup[0], rss[-1][1], max(kb for _, kb in rss)
    return {"elapsed_s": round(elapsed, 2), "requests": sum(outcomes.values()), "outcomes": dict(outcomes),
            "request_ids": ids, "rss_kb": {"after_warmup": base, "final": final, "peak": peak},
            "rss_growth_after_warmup": round((final - base) / base, 4)}


def run(args: argparse.Namespace) -> dict:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rg-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        experts = {}
        for name in ("soak-a", "soak-b"):
            proc, url = start_expert(name, args.fail_rate)
            procs.append(proc)
            experts[name] = url
        config = write_config(work / "experts.yaml", experts, args.concurrency)
        port = free_port()
        log = open(work / "gateway.log", "wb")
        gateway = subprocess.Popen([sys.executable, "-m", "router_gateway.cli", "serve", "--config", str(config),
                                    "--port", str(port), "--log-level", "warning"], cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ, "ROUTER_GATEWAY_KEYS": str(work / "keys.json")})
        procs.append(gateway)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", gateway)
        result = asyncio.run(drive(url, args.concurrency, args.duration, gateway.pid, args.warmup))
        gateway.send_signal(signal.SIGTERM)  # drains and flushes the request log
        gateway.wait(60)
        db = sqlite3.connect(work / "requests.db")
        logged = {row[0] for row in db.execute("SELECT request_id FROM requests")}
        db.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    ids = result.pop("request_ids")
    incorrect = {k: v for k, v in result["outcomes"].items() if k.startswith("incorrect")}
    result.update({
        "concurrency": args.concurrency, "duration_s": args.duration, "fail_rate": args.fail_rate,
        "requests_per_s": round(result["requests"] / result["elapsed_s"], 1),
        "incorrect": sum(incorrect.values()),
        "log_records": len(logged), "log_matches": len(logged) == result["requests"] and set(ids) <= logged,
        "missing_ids": len(set(ids) - logged), "workdir": str(work),
    })
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--fail-rate", type=float, default=0.1, help="share of upstream calls that fail")
    p.add_argument("--warmup", type=float, default=0.2, help="share of the run before the RSS baseline")
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default="var/soak.json")
    args = p.parse_args(argv)
    result = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    o = result["outcomes"]
    print(f"soak: {result['requests']} requests in {result['elapsed_s']} s = {result['requests_per_s']} req/s "
          f"at concurrency {args.concurrency}, upstream fail rate {args.fail_rate:.0%}")
    print(f"  outcomes: {dict(sorted(o.items()))}; incorrect: {result['incorrect']}")
    print(f"  request log: {result['log_records']} records for {result['requests']} requests "
          f"({'exactly one each' if result['log_matches'] else 'MISMATCH'})")
    r = result["rss_kb"]
    print(f"  gateway RSS: {r['after_warmup'] / 1024:.0f} MiB after warm-up -> {r['final'] / 1024:.0f} MiB "
          f"(growth {result['rss_growth_after_warmup']:+.1%}, peak {r['peak'] / 1024:.0f} MiB)")
    print(f"  JSON: {args.out}")
    ok = result["incorrect"] == 0 and result["log_matches"] and result["rss_growth_after_warmup"] < 0.10
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
