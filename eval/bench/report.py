"""The README's performance table, rendered from the bench JSON (``router-gateway bench --json``)."""
from __future__ import annotations

from typing import Any


def _get(data: dict, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def _ratio(a: Any, b: Any) -> float | str | None:
    if a is None or b is None:
        return None
    if b == 0:
        return "inf" if a > 0 else None
    return a / b


def rows(data: dict) -> list[tuple[str, str, str]]:
    """(figure, measured, target) rows, in the order of issue 7's targets."""
    out = []
    for c in (1, 32, 128):
        for target, label in (("passthrough", "pass-through"), ("routed", "routed (`auto`)"),
                              ("litellm", "LiteLLM proxy")):
            p50, p99 = _get(data, f"added_ms.{target}.c{c}.p50"), _get(data, f"added_ms.{target}.c{c}.p99")
            goal = ""
            if target == "passthrough" and c == 32:
                goal = "p50 <= 1.5 ms, p99 <= 5 ms, <= 0.5x LiteLLM"
            elif target == "routed" and c == 1:
                goal = "p50 <= 5 ms, p99 <= 15 ms"
            out.append((f"added latency, {label}, concurrency {c} (p50 / p99)",
                        f"{_fmt(p50, 'ms')} / {_fmt(p99, 'ms')}", goal))
    r50 = _ratio(_get(data, "added_ms.passthrough.c32.p50"), _get(data, "added_ms.litellm.c32.p50"))
    r99 = _ratio(_get(data, "added_ms.passthrough.c32.p99"), _get(data, "added_ms.litellm.c32.p99"))
    out.append(("pass-through / LiteLLM added latency at c=32 (p50 / p99)",
                f"{_fmt(r50, 'x')} / {_fmt(r99, 'x')}", "<= 0.5x"))
    out.append(("TTFT added, pass-through stream, c=1 (p50 / p99)",
                f"{_fmt(_get(data, 'ttft_added_ms.passthrough.p50'), 'ms')} / "
                f"{_fmt(_get(data, 'ttft_added_ms.passthrough.p99'), 'ms')}", "p50 <= 2 ms"))
    out.append(("TTFT added, LiteLLM stream, c=1 (p50)", _fmt(_get(data, "ttft_added_ms.litellm.p50"), "ms"), ""))
    out.append(("routing decision alone, ~200-token prompt (p50 / p99)",
                f"{_fmt(_get(data, 'route_decision_ms.p50'), 'ms')} / {_fmt(_get(data, 'route_decision_ms.p99'), 'ms')}",
                "p50 <= 4 ms"))
    out.append(("routing decision alone, short prompt (p50)", _fmt(_get(data, "route_decision_ms.short_p50"), "ms"), ""))
    current = _get(data, "meta.embedder") or "onnx"
    for backend, d in sorted((_get(data, "route_decision_ms_by_embedder") or {}).items()):
        if backend == current:
            continue
        out.append((f"routing decision alone, {backend} embedder instead, ~200-token prompt (p50 / p99)",
                    f"{_fmt(d.get('p50'), 'ms')} / {_fmt(d.get('p99'), 'ms')}",
                    "p50 <= 4 ms" + (" (lower routing quality: see eval/static_embedder_report.md)"
                                     if backend == "static" else "")))
    out.append(("routing decision CPU per prompt (~200 tokens / short)",
                f"{_fmt(_get(data, 'route_decision_ms.cpu_ms'), 'ms')} / "
                f"{_fmt(_get(data, 'route_decision_ms.short_cpu_ms'), 'ms')}", ""))
    out.append(("routing decision, batched x32, per prompt (~200 tokens / short)",
                f"{_fmt(_get(data, 'route_decision_ms.batched_per_prompt'), 'ms')} / "
                f"{_fmt(_get(data, 'route_decision_ms.short_batched_per_prompt'), 'ms')}", ""))
    rps = {t: _get(data, f"rps.{t}") for t in ("direct", "passthrough", "routed", "litellm")}
    out.append(("throughput at saturation: stub alone", _fmt(rps["direct"], "req/s"), ""))
    out.append(("throughput at saturation: routed", _fmt(rps["routed"], "req/s"), ">= 300 req/s"))
    out.append(("throughput at saturation: pass-through (x LiteLLM)",
                f"{_fmt(rps['passthrough'], 'req/s')} ({_fmt(_ratio(rps['passthrough'], rps['litellm']), 'x')})",
                ">= 2x LiteLLM"))
    out.append(("throughput at saturation: LiteLLM proxy", _fmt(rps["litellm"], "req/s"), ""))
    two = _get(data, "rps_routed_2_workers")
    speedup = _get(data, "workers_speedup.routed")
    if speedup is None:  # a report from before the paired measurement
        speedup = _ratio(two, rps["routed"])
    out.append(("routed throughput, 2 workers (x 1 worker, median of paired rounds)",
                f"{_fmt(two, 'req/s')} ({_fmt(speedup, 'x')})", ">= 1.6x"))
    out.append(("gateway RSS (embedder and routers loaded)", _fmt(_get(data, "rss_mb"), "MB"), "<= 500 MB"))
    out.append(("cold start to /ready", _fmt(_get(data, "cold_start_s"), "s"), "<= 8 s"))
    for target, label in (("passthrough", "gateway, pass-through"), ("routed", "gateway, routed"),
                          ("litellm", "LiteLLM proxy")):
        out.append((f"CPU per request, {label} (plain / stream)",
                    f"{_fmt(_get(data, f'cpu_ms_per_request.{target}.plain'), 'ms')} / "
                    f"{_fmt(_get(data, f'cpu_ms_per_request.{target}.stream'), 'ms')}", ""))
    share = _get(data, "stub_cpu_share")
    out.append(("stub expert's share of CPU (pass-through, c=32)", _fmt(share * 100 if share is not None else None, "%"),
                "small: not the bottleneck"))
    return out


def _loadavg(value: Any) -> str:
    return f"{value[0]:.1f}" if isinstance(value, (list, tuple)) and value else "n/a"


def render_markdown(data: dict) -> str:
    """A markdown table with a one-line note on how the figures were taken."""
    meta = data.get("meta", {})
    lines = ["| figure | measured | target |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows(data)]
    note = (f"\nMedians of {meta.get('runs', '?')} runs of {meta.get('duration_s', '?')} s each on "
            f"{meta.get('cpus', '?')} CPUs (load generator, stub, gateway and LiteLLM share them); stub delay "
            f"{meta.get('stub_delay_ms', '?')} ms, saturation at concurrency {meta.get('saturation_concurrency', '?')} "
            f"against a zero-delay stub; router `{meta.get('router_type', '?')}` over 4,800 training rows, "
            f"embedder `{meta.get('embedder', 'onnx')}`; LiteLLM "
            f"{meta.get('litellm_version', 'not run')}; load average at start "
            f"{_loadavg(meta.get('loadavg_start'))} (other work on the host inflates wall-clock figures, not "
            f"CPU per request). Generated by `router-gateway bench --json`.\n")
    return "\n".join(lines) + "\n" + note
