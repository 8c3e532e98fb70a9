"""``router-gateway bench``: the gateway's performance side by side with the stub alone and LiteLLM."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="measure the gateway's added latency, throughput, RSS and "
                                            "cold start against a stub expert and LiteLLM's proxy")
    p.add_argument("--quick", action="store_true", help="one short round (CI smoke test)")
    p.add_argument("--json", metavar="PATH", help="write every figure as JSON with stable keys")
    p.add_argument("--markdown", metavar="PATH", help="write the README performance table")
    p.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM proxy")
    p.add_argument("--runs", type=int, default=3, help="rounds; figures are medians (default: %(default)s)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per load run (default: %(default)s)")
    p.add_argument("--delay-ms", type=float, default=20.0, help="stub answer delay (default: %(default)s)")
    p.add_argument("--chunks", type=int, default=16, help="chunks per streamed answer (default: %(default)s)")
    p.add_argument("--concurrency", default="1,32,128", help="comma-separated (default: %(default)s)")
    p.add_argument("--saturation-concurrency", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="worker processes for the multi-worker run")
    p.add_argument("--embed-threads", type=int, default=1)
    p.add_argument("--embedder", choices=("onnx", "static", "static-tuned", "torch"), default="onnx",
                   help="the gateway's embedder backend: onnx (MiniLM int8), static (distilled token table, "
                        "~0.5 ms for 200 tokens, lower routing quality), static-tuned (the same lookup over "
                        "a table trained to mimic MiniLM; build it first), torch (default: %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import signal
    import sys

    from router_gateway.commands.serve import SERVING_THREAD_ENV
    for name in SERVING_THREAD_ENV:  # the in-process routing-decision figure runs as `serve` would
        os.environ.setdefault(name, "1")
    # SIGTERM (kill, CI timeouts) unwinds like Ctrl-C, so the stub, gateway and LiteLLM processes that
    # the bench started in their own sessions are stopped by its cleanup instead of being orphaned
    signal.signal(signal.SIGTERM, _interrupt)

    from eval.bench.report import render_markdown
    from eval.bench.runner import BenchOptions, run_bench, write_json

    opts = BenchOptions(quick=args.quick, runs=args.runs, duration=args.duration, delay_ms=args.delay_ms,
                        chunks=args.chunks, concurrencies=tuple(int(c) for c in args.concurrency.split(",")),
                        saturation_concurrency=args.saturation_concurrency, litellm=not args.no_litellm,
                        workers=args.workers, embed_threads=args.embed_threads, embedder=args.embedder,
                        keep_dir=args.keep)
    result = run_bench(opts)
    table = render_markdown(result)
    if args.json:
        write_json(result, args.json)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(table)
    sys.stdout.write(table)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
