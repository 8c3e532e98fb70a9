"""Wait for a condition instead of sleeping a fixed time: a log flush, a background task, a server."""
from __future__ import annotations

import asyncio
import time


def wait_for(predicate, timeout: float = 10.0, step: float = 0.05) -> bool:
    """Call ``predicate`` until it returns something true (returned) or ``timeout`` seconds pass (False).

    Tests assert on the result, so a condition that never holds still fails, after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


async def wait_until(predicate, timeout: float = 10.0, step: float = 0.01) -> bool:
    """``wait_for`` inside an event loop: sleeps with asyncio so the tasks being waited for can run."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step)
