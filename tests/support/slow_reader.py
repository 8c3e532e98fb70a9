"""A slow consumer of an HTTP/1.1 client response: what back-pressure tests read it with."""
from __future__ import annotations

import asyncio


async def read_slowly(response, pause_s: float) -> tuple[bytes, bool, int]:
    """Read every chunk with a pause after each; returns the body, whether reading was ever paused on
    the connection, and the most bytes it held buffered at once."""
    received, paused, most_buffered = [], False, 0
    async for chunk in response.chunks():
        received.append(chunk)
        paused = paused or response._conn.paused
        most_buffered = max(most_buffered, response._conn.buffered)
        await asyncio.sleep(pause_s)
    response.release()
    return b"".join(received), paused, most_buffered
