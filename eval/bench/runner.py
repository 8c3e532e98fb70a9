"""``router-gateway bench``: stub experts, the gateway and LiteLLM's proxy side by side on loopback.

Every figure is a median over ``runs`` rounds; within a round each target is measured right after
the stub alone at the same concurrency, so "added" latency compares like with like.
"""
from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from eval.bench import procs
from eval.bench.procs import Proc, python_module

TARGETS = ("passthrough", "routed", "litellm")


@dataclass
class BenchOptions:
    """What to run; ``quick`` is the CI smoke variant (short, one round)."""

    quick: bool = False
    runs: int = 3
    duration: float = 5.0
    delay_ms: float = 20.0
    chunks: int = 16
    concurrencies: tuple[int, ...] = (1, 32, 128)
    saturation_concurrency: int = 64
    litellm: bool = True
    workers: int = 2
    embed_threads: int = 1
    embedder: str = "onnx"  # the deployment's embedder backend (onnx, static, torch)
    keep_dir: bool = False
    log: object = field(default=None, repr=False)

    def __post_init__(self):
        if self.quick:
            self.runs, self.duration = 1, 1.0


def say(opts: BenchOptions, message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def loadgen(url: str, model: str, concurrency: int, duration: float, stream: bool,
            api_key: str = "bench") -> dict:
    """One load run in its own process; returns its summary."""
    cmd = python_module("eval.bench.loadgen", "--url", url, "--model", model, "--concurrency",
                        str(concurrency), "--duration", str(duration), "--api-key", api_key) + \
        (["--stream"] if stream else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class Bench:
    """Holds the processes of one benchmark run and the raw measurements."""

    def __init__(self, opts: BenchOptions):
        self.opts = opts
        self.work = Path(tempfile.mkdtemp(prefix="router-gateway-bench-"))
        self.procs: dict[str, Proc] = {}
        self.urls: dict[str, str] = {}
        self.raw: dict[str, list] = {}
        self.result: dict = {}
        self.litellm_key = "bench"

    # -- processes -------------------------------------------------------------------------
    def start_stubs(self) -> None:
        for name, delay in (("stub", self.opts.delay_ms), ("stub-fast", 0.0)):
            port = procs.free_port()
            self.procs[name] = Proc(name, python_module("eval.bench.stub_expert", "--port", str(port),
                                                        "--delay-ms", str(delay), "--chunks",
                                                        str(self.opts.chunks)), self.work)
            self.urls[name] = f"http://127.0.0.1:{port}"
            self.procs[name].wait_ready(self.urls[name] + "/health", 30)

    def start_gateway(self, config: Path, workers: int = 1, name: str | None = None) -> float:
        port = procs.free_port()
        name = name or f"gateway-{workers}w"
        cmd = python_module("router_gateway.cli", "serve", "--config", str(config), "--port", str(port),
                            "--workers", str(workers), "--log-level", "warning")
        self.procs[name] = Proc(name, cmd, self.work, env={"ROUTER_GATEWAY_BENCH": "1"})
        self.urls["gateway"] = self.urls[name] = f"http://127.0.0.1:{port}"
        return self.procs[name].wait_ready(self.urls["gateway"] + "/ready", 120)

    def start_litellm(self) -> str | None:
        from eval.bench import litellm_proxy as lp
        from eval.bench.scenario import litellm_config
        try:
            lp.ensure_litellm()
        except (subprocess.CalledProcessError, OSError) as exc:
            say(self.opts, f"LiteLLM not available ({exc}); skipping it")
            return None
        port = procs.free_port()
        config = litellm_config(self.urls["stub"], self.urls["stub-fast"], self.work)
        self.litellm_key = "sk-" + secrets.token_hex(24)  # it refuses to start without a master key
        self.procs["litellm"] = Proc("litellm", lp.proxy_command(config, port), self.work,
                                     env={**lp.ENV, "LITELLM_MASTER_KEY": self.litellm_key})
        self.urls["litellm"] = f"http://127.0.0.1:{port}"
        self.procs["litellm"].wait_ready(self.urls["litellm"] + "/health/liveliness", 180)
        return lp.installed_version()

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc:
            proc.stop()

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        if not self.opts.keep_dir:
            shutil.rmtree(self.work, ignore_errors=True)

    # -- measurements ----------------------------------------------------------------------
    def key(self, target: str) -> str:
        return self.litellm_key if target == "litellm" else "bench"

    def endpoint(self, target: str, fast: bool = False) -> tuple[str, str]:
        """(url, model) for a target; ``fast`` uses the zero-delay stub."""
        stub = "stub-fast" if fast else "stub"
        if target == "direct":
            return self.urls[stub] + "/v1/chat/completions", "stub-model"
        if target == "litellm":
            return self.urls["litellm"] + "/v1/chat/completions", stub
        model = ("auto-fast" if fast else "auto") if target == "routed" else stub
        return self.urls["gateway"] + "/v1/chat/completions", model

    def latency_rounds(self, targets: list[str]) -> None:
        """For each round, stream mode and concurrency: the stub alone, then each target."""
        o = self.opts
        for r in range(o.runs):
            for stream in (False, True):
                for c in o.concurrencies:
                    for target in ["direct", *targets]:
                        url, model = self.endpoint(target)
                        cpu0 = {n: procs.cpu_seconds(p.pid) for n, p in self.procs.items()}
                        summary = loadgen(url, model, c, o.duration, stream, self.key(target))
                        summary["cpu_s_servers"] = {n: round(procs.cpu_seconds(p.pid) - cpu0[n], 3)
                                                    for n, p in self.procs.items()}
                        summary.update(round=r, target=target)
                        self.raw.setdefault("latency", []).append(summary)
                        say(o, f"round {r + 1}/{o.runs} {'stream' if stream else 'plain '} c={c:<3} "
                               f"{target:<11} p50 {summary.get('p50', float('nan')):7.2f} ms  "
                               f"p99 {summary.get('p99', float('nan')):7.2f} ms  {summary['rps']:8.1f} req/s"
                               + (f"  errors {summary['errors']}" if summary["errors"] else ""))

    def saturation(self, targets: list[str], key: str = "saturation") -> None:
        o = self.opts
        for r in range(o.runs):
            for target in targets:
                url, model = self.endpoint(target, fast=True)
                # long enough that a slow target completes many requests (latency can reach seconds)
                summary = loadgen(url, model, o.saturation_concurrency, max(o.duration, 1.0 if o.quick else 8.0), False,
                                  self.key(target))
                summary.update(round=r, target=target)
                self.raw.setdefault(key, []).append(summary)
                say(o, f"saturation round {r + 1}/{o.runs} {target:<11} {summary['rps']:8.1f} req/s"
                       + (f"  errors {summary['errors']}" if summary["errors"] else ""))

    def paired_saturation(self, gateways: list[str], targets: list[str], key: str) -> None:
        """Saturation of several gateway deployments, alternating between them within each round (and
        the order between rounds), so drifting load on a shared host hits them alike; compare them by
        the median of per-round ratios."""
        o = self.opts
        for r in range(o.runs):
            for name in (gateways if r % 2 == 0 else gateways[::-1]):
                self.urls["gateway"] = self.urls[name]
                for target in targets:
                    url, model = self.endpoint(target, fast=True)
                    summary = loadgen(url, model, o.saturation_concurrency, max(o.duration, 1.0 if o.quick else 8.0),
                                      False, self.key(target))
                    summary.update(round=r, target=target, gateway=name)
                    self.raw.setdefault(key, []).append(summary)
                    say(o, f"paired saturation round {r + 1}/{o.runs} {name:<18} {target:<11} "
                           f"{summary['rps']:8.1f} req/s" + (f"  errors {summary['errors']}" if summary["errors"] else ""))


def paired_ratio(raw: list[dict], target: str, numerator: str, denominator: str) -> float | None:
    """Median over rounds of (numerator's req/s / denominator's req/s) for one target."""
    by_round: dict[int, dict[str, float]] = {}
    for s in raw:
        if s["target"] == target and s.get("rps"):
            by_round.setdefault(s["round"], {})[s["gateway"]] = s["rps"]
    return _median([g[numerator] / g[denominator] for g in by_round.values() if numerator in g and denominator in g])


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not np.isnan(v)]
    return round(float(np.median(values)), 3) if values else None


def summarise(raw: dict, targets: list[str], concurrencies: tuple[int, ...]) -> dict:
    """Added latency per target, concurrency and mode as the median over rounds of (target - stub)."""
    rows = raw.get("latency", [])
    base = {(s["round"], s["stream"], s["concurrency"]): s for s in rows if s["target"] == "direct"}
    added: dict = {}
    added_stream: dict = {}
    ttft: dict = {}
    for target in targets:
        for c in concurrencies:
            for stream, into in ((False, added), (True, added_stream)):
                pairs = [(s, base.get((s["round"], stream, c))) for s in rows
                         if s["target"] == target and s["stream"] == stream and s["concurrency"] == c]
                pairs = [(s, b) for s, b in pairs if b and "p50" in s and "p50" in b]
                cell = {q: _median([s[q] - b[q] for s, b in pairs]) for q in ("p50", "p99")}
                into.setdefault(target, {})[f"c{c}"] = cell
                if stream:
                    t = {q: _median([s[f"ttft_{q}"] - b[f"ttft_{q}"] for s, b in pairs
                                     if f"ttft_{q}" in s and f"ttft_{q}" in b]) for q in ("p50", "p99")}
                    ttft.setdefault(target, {})[f"c{c}"] = t
    for target, cells in ttft.items():  # the headline TTFT overhead is one request alone (c=1)
        first = cells.get(f"c{concurrencies[0]}", {})
        cells.update(p50=first.get("p50"), p99=first.get("p99"))
    direct = {f"c{c}": {q: _median([b[q] for (r, st, cc), b in base.items() if cc == c and not st and q in b])
                        for q in ("p50", "p99")} for c in concurrencies}
    return {"added_ms": added, "added_ms_stream": added_stream, "ttft_added_ms": ttft, "direct_ms": direct}


def cpu_per_request(raw: dict, targets: list[str]) -> dict:
    """CPU ms the forwarding process spends per request (all plain and streamed latency runs).

    Unlike wall-clock latency this barely moves when other work shares the machine, so it is the
    figure to compare between versions of the gateway on a busy host."""
    out = {}
    for target in targets:
        prefix = "litellm" if target == "litellm" else "gateway"
        for stream in (False, True):
            values = []
            for s in raw.get("latency", []):
                if s["target"] == target and s["stream"] == stream and s.get("n"):
                    cpu = sum(v for k, v in s["cpu_s_servers"].items() if k.startswith(prefix))
                    values.append(cpu / s["n"] * 1e3)
            out.setdefault(target, {})["stream" if stream else "plain"] = _median(values)
    return out


def throughput(raw: list[dict], targets: list[str]) -> dict:
    return {t: _median([s["rps"] for s in raw if s["target"] == t]) for t in targets}


def stub_cpu_share(raw: dict, concurrency: int = 32) -> float | None:
    """Stub CPU over all server CPU while the gateway forwards plain requests at ``concurrency``."""
    shares = []
    for s in raw.get("latency", []):
        if s["target"] == "passthrough" and not s["stream"] and s["concurrency"] == concurrency:
            cpu = s["cpu_s_servers"]
            servers = cpu.get("stub", 0.0) + sum(v for k, v in cpu.items() if k.startswith("gateway"))
            if servers > 0:
                shares.append(cpu.get("stub", 0.0) / (servers + s.get("cpu_s", 0.0)))
    return _median(shares)


def decision_figures(decision: dict) -> dict:
    """The stable ``route_decision_ms`` keys from ``measure_decision``'s result."""
    return {"p50": decision["200tok"]["p50"], "p99": decision["200tok"]["p99"],
            "short_p50": decision["short"]["p50"], "cpu_ms": decision["200tok"]["cpu_ms"],
            "short_cpu_ms": decision["short"]["cpu_ms"],
            "batched_per_prompt": decision["200tok_batched_per_prompt"],
            "short_batched_per_prompt": decision["short_batched_per_prompt"]}


def other_embedders(current: str) -> list[str]:
    """Embedder backends whose routing decision is also measured: onnx, and static when its distilled
    table is already built (distilling takes minutes and torch; the bench does not do it unasked)."""
    from router_gateway.embedding.static_backend import model_dir_for, table_path_for

    out = []
    if current != "onnx":
        out.append("onnx")
    try:
        static_ready = table_path_for(model_dir_for()).exists()
    except Exception:  # the embedder package is not installed: nothing to compare
        static_ready = False
    if current != "static" and static_ready:
        out.append("static")
    return out


def run_bench(opts: BenchOptions) -> dict:
    """Run everything; returns the JSON-ready result."""
    from eval.bench.decision import measure_decision
    from eval.bench.scenario import gateway_config, train_router
    from router_gateway.embedding.factory import make_embedder

    bench = Bench(opts)
    result: dict = {"meta": {"quick": opts.quick, "runs": opts.runs, "duration_s": opts.duration,
                             "stub_delay_ms": opts.delay_ms, "stream_chunks": opts.chunks,
                             "concurrencies": list(opts.concurrencies),
                             "saturation_concurrency": opts.saturation_concurrency,
                             "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                             "python": platform.python_version(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "loadavg_start": os.getloadavg()}}
    try:
        bench.start_stubs()
        say(opts, f"stubs up at {bench.urls['stub']} ({opts.delay_ms:g} ms) and {bench.urls['stub-fast']} (0 ms)")
        # onnx exports its model file once if needed; static distils its token table once (needs torch)
        embedder = make_embedder(opts.embedder, threads=opts.embed_threads)
        router_type = train_router(embedder, bench.work / "routers")
        del embedder
        config = gateway_config(bench.urls["stub"], bench.urls["stub-fast"], bench.work, router_type,
                                opts.embed_threads, opts.embedder)
        # the bench's temporary directory is written as $WORK: reports carry no path of the machine
        result["meta"].update(embedder=opts.embedder, gateway_config=config.read_text().replace(str(bench.work), "$WORK"),
                              router_type=router_type or "strongest (no trained router registered: "
                              "routed requests skip the embedding)")
        say(opts, f"routing decision alone (router: {router_type or 'strongest'}) ...")
        decision = measure_decision(config, n=30 if opts.quick else 200)
        result["route_decision"] = decision
        result["route_decision_ms"] = decision_figures(decision)
        result["route_decision_ms_by_embedder"] = {opts.embedder: dict(result["route_decision_ms"])}
        for backend in other_embedders(opts.embedder):
            say(opts, f"routing decision alone with the {backend} embedder (the same router, retrained on it) ...")
            alt = bench.work / f"decision-{backend}"
            embedder = make_embedder(backend, threads=opts.embed_threads)
            alt_router = train_router(embedder, alt / "routers")
            del embedder
            alt_config = gateway_config(bench.urls["stub"], bench.urls["stub-fast"], alt, alt_router,
                                        opts.embed_threads, backend)
            result["route_decision_ms_by_embedder"][backend] = decision_figures(
                measure_decision(alt_config, n=30 if opts.quick else 200))
        result["cold_start_s"] = round(bench.start_gateway(config, 1), 3)
        say(opts, f"gateway ready in {result['cold_start_s']} s")
        targets = ["passthrough", "routed"]
        if opts.litellm:
            version = bench.start_litellm()
            if version:
                targets.append("litellm")
                result["meta"]["litellm_version"] = version
        bench.latency_rounds(targets)
        bench.saturation(["direct", *targets])
        result["rss_mb"] = round(procs.rss_mb(bench.procs["gateway-1w"].pid), 1)
        bench.stop("gateway-1w")
        bench.stop("litellm")
        if opts.workers > 1:
            # the multi-worker deployment next to a fresh one-worker one, measured alternately (paired_saturation)
            multi, single = f"gateway-{opts.workers}w", "gateway-1w-paired"
            result["cold_start_s_workers"] = round(bench.start_gateway(config, opts.workers), 3)
            bench.start_gateway(config, 1, name=single)
            bench.paired_saturation([single, multi], ["routed", "passthrough"], key="saturation_workers")
            result["rss_mb_workers"] = round(procs.rss_mb(bench.procs[multi].pid), 1)
            bench.stop(multi)
            bench.stop(single)
        # every key is present (None when a target was skipped), so consumers can rely on them
        result.update(summarise(bench.raw, list(TARGETS), opts.concurrencies))
        result["rps"] = throughput(bench.raw.get("saturation", []), ["direct", *TARGETS])
        paired = bench.raw.get("saturation_workers", [])
        multi_name = f"gateway-{opts.workers}w"
        multi = throughput([s for s in paired if s["gateway"] == multi_name], ["routed", "passthrough"])
        result["rps_routed_2_workers"] = multi.get("routed")
        result["rps_passthrough_2_workers"] = multi.get("passthrough")
        single = throughput([s for s in paired if s["gateway"] != multi_name], ["routed", "passthrough"])
        result["rps_routed_1_worker_paired"] = single.get("routed")
        # the worker speed-up: median of per-round ratios against the one-worker gateway measured beside it
        result["workers_speedup"] = {t: paired_ratio(paired, t, multi_name, "gateway-1w-paired")
                                     for t in ("routed", "passthrough")}
        result["stub_cpu_share"] = stub_cpu_share(bench.raw)
        result["cpu_ms_per_request"] = cpu_per_request(bench.raw, list(TARGETS))
        result["meta"]["loadavg_end"] = os.getloadavg()
        result["raw"] = bench.raw
    except BaseException:
        for proc in bench.procs.values():
            say(opts, f"--- {proc.name} log tail ---\n{proc.tail()}")
        raise
    finally:
        bench.close()
    return result


def write_json(result: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


__all__ = ["BenchOptions", "run_bench", "write_json", "summarise", "asdict"]
