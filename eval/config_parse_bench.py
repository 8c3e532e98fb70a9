"""How long experts.yaml takes to load, and how long a reload stalls the gateway's event loop.

Three files, written to a temporary folder:

- ``many``: 200,000 list items in a flow list, under 1 MB (issue 14: 13 to 40 s with the pure-Python
  parser while reloads queued behind it). Refused now, after at most MAX_NODES parser events.
- ``largest``: the largest registry the bounds accept (just under MAX_NODES values), loaded in full.
- ``typical``: the repository's experts.yaml.

For each: the median load time over ``--repeat`` runs, and the longest event-loop stall seen by a
5 ms ticker while the load runs in a worker thread the way ``Gateway.reload`` runs it.
Usage: ``python -m eval.config_parse_bench [--repeat 5]``.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from router_gateway.domain.config import load_config
from router_gateway.domain.config_yaml import MAX_NODES, ConfigError

EXPERT = ("  e{i}:\n    base_url: http://127.0.0.1:{port}/v1\n    model: m{i}\n"
          "    price: {{input_per_mtok: 1, output_per_mtok: 2}}\n    domains: [{domains}]\n")


def many_items_file(folder: Path, items: int = 200_000) -> Path:
    path = folder / "many.yaml"
    path.write_text("experts:\n  a:\n    base_url: http://127.0.0.1:1/v1\n    model: m\n"
                    "    price: {input_per_mtok: 1, output_per_mtok: 2}\n"
                    f"    domains: [{','.join('x' for _ in range(items))}]\n")
    return path


def largest_accepted_file(folder: Path) -> Path:
    """Experts with 256 domains each (the per-expert bound) until just under MAX_NODES values."""
    per_expert = 256 + 12  # domains plus the expert's other keys and values
    count = (MAX_NODES - 10) // per_expert
    domains = ", ".join(f"d{j}" for j in range(256))
    body = "".join(EXPERT.format(i=i, port=1000 + i, domains=domains) for i in range(count))
    path = folder / "largest.yaml"
    path.write_text("experts:\n" + body)
    return path


def time_load(path: Path) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        config = load_config(path)
        outcome = f"loaded, {len(config.experts)} experts"
    except ConfigError as exc:
        outcome = f"refused: {str(exc).split(': ', 1)[-1]}"
    return time.perf_counter() - started, outcome


async def loop_stall_during_load(path: Path | None) -> float:
    """Longest gap between 5 ms ticks while load_config runs in a thread (as Gateway.reload does);
    ``None``: while the thread only sleeps 0.3 s (the machine's own scheduling noise)."""
    worst, done = 0.0, asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            worst, last = max(worst, now - last - 0.005), now

    tick = asyncio.create_task(ticker())
    try:
        await asyncio.to_thread(time_load, path) if path else await asyncio.to_thread(time.sleep, 0.3)
    finally:
        done.set()
        await tick
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = {"many": many_items_file(folder), "largest": largest_accepted_file(folder),
                 "typical": Path(__file__).resolve().parent.parent / "experts.yaml"}
        print(f"{'file':8} {'bytes':>9} {'load s (median)':>16} {'max loop stall ms':>18}  outcome")
        for name, path in files.items():
            runs = [time_load(path) for _ in range(args.repeat)]
            stall = max(asyncio.run(loop_stall_during_load(path)) for _ in range(args.repeat))
            print(f"{name:8} {path.stat().st_size:>9} {statistics.median(r[0] for r in runs):>16.3f} "
                  f"{stall * 1e3:>18.1f}  {runs[0][1][:70]}")
        idle = max(asyncio.run(loop_stall_during_load(None)) for _ in range(args.repeat))
        print(f"{'idle':8} {'-':>9} {'-':>16} {idle * 1e3:>18.1f}  (a thread that only sleeps: scheduling noise)")


if __name__ == "__main__":
    main()
