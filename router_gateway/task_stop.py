"""Stopping background tasks when an await inside them may swallow their cancellation.

A redis-py call can return its reply with the calling task's cancellation still pending
(``Task.cancelling()`` > 0 after the await, no ``CancelledError`` raised): the task runs on, and a plain
cancel-then-gather waits for it forever. Seen twice: a learning shadow worker back at ``queue.get()``
(about 1 close in 7 of the learning replicas test) and the shared-state sync loop back at its sleep
(about 1 close in 10 of the two-replica budget test; it hung a whole CI run). So every shutdown here
cancels again whatever still runs, and loops that call Redis check ``cancellation_pending()``.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger("router_gateway.task_stop")


def cancellation_pending() -> bool:
    """True when the current task was asked to stop, even if the await that got the request swallowed it."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def stop_tasks(tasks: Iterable[asyncio.Task], what: str, rounds: int = 20, wait_s: float = 0.5) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again the ones still running. Gives up after
    ``rounds`` (the tasks are left behind, logged) rather than hang the gateway's shutdown."""
    tasks = list(tasks)
    for _ in range(rounds):
        pending = [t for t in tasks if not t.done()]
        if not pending:
            break
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=wait_s)
    left = [t.get_name() for t in tasks if not t.done()]
    if left:
        log.warning("%s: tasks still running after %d cancellations: %s", what, rounds, left)
    for task in tasks:  # retrieve outcomes so asyncio does not log "exception was never retrieved"
        if task.done() and not task.cancelled():
            task.exception()
