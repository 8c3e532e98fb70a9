"""The cost of re-framing an upstream SSE event that never ends (no blank line), per size.

Issue 14 found one such event stalling the gateway's event loop (/health took 0.3-4.9 s): the old
``sse_batches`` re-joined and re-searched its whole buffer on every read, quadratic in the event's size.
This times the old algorithm (kept below as the reference) against the current one on the same input:
an event of N MiB arriving in 64 KiB reads. The current one refuses an event past ``MAX_EVENT_BYTES``
(1 MiB); to time its scan alone the limit is raised above N here.

    python -m eval.bench.sse_event_scan
"""
from __future__ import annotations

import argparse
import asyncio
import time
from typing import AsyncIterator

from router_gateway.forwarding.sse import MAX_EVENT_BYTES, EventTooLarge, sse_batches


async def old_sse_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """The algorithm before the fix (router_gateway/forwarding/sse.py at 1cca038), for comparison."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        if b"\n\n" not in buffer and b"\r\n\r\n" not in buffer:
            continue
        if b"\r\n" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        cut = buffer.rfind(b"\n\n") + 2
        complete, buffer = buffer[:cut], buffer[cut:]
        events = [event + b"\n\n" for event in complete.split(b"\n\n") if event.strip()]
        if events:
            yield events
    if buffer.strip():
        yield [buffer if buffer.endswith(b"\n\n") else buffer + b"\n\n"]


async def _reads(total: int, read: int) -> AsyncIterator[bytes]:
    yield b"data: "
    piece = b"x" * read
    for _ in range(total // read):
        yield piece
    yield b"\n\n"


async def _time(batches) -> float:
    started = time.perf_counter()
    async for _ in batches:
        pass
    return time.perf_counter() - started


async def _refusal_time(read: int) -> float:
    started = time.perf_counter()
    try:
        async for _ in sse_batches(_reads(64 << 20, read)):
            pass
    except EventTooLarge:
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mib", default="1,4,16")
    parser.add_argument("--read-kib", type=int, default=64)
    args = parser.parse_args()
    read = args.read_kib * 1024
    print(f"one SSE event without a blank line, in {args.read_kib} KiB reads: seconds to re-frame it")
    print(f"{'MiB':>6} {'old (quadratic)':>16} {'new (linear)':>13}")
    for size in (int(s) for s in args.sizes_mib.split(",")):
        total = size << 20
        old = asyncio.run(_time(old_sse_batches(_reads(total, read))))
        new = asyncio.run(_time(sse_batches(_reads(total, read), max_event_bytes=total + 1024)))
        print(f"{size:>6} {old:>16.3f} {new:>13.4f}")
    print(f"with the default limit ({MAX_EVENT_BYTES >> 20} MiB) an endless event is refused after "
          f"{asyncio.run(_refusal_time(read)) * 1e3:.1f} ms of scanning")


if __name__ == "__main__":
    main()
