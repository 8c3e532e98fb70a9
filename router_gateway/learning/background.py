"""A low-priority worker thread for the learning loop's CPU work (label writes, training sets,
retraining), so it does not compete with the threads that serve clients.

The thread lowers its own scheduling priority (Linux ``setpriority`` on the thread id, nice 19): on
a busy machine the kernel runs the event loop's thread and the embedding thread first. The GIL is
still shared; the heavy parts (numpy, sqlite) release it, and Python holds it at most the switch
interval (5 ms) before the event loop's thread gets it back.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

log = logging.getLogger("router_gateway.learning")
NICE = 19


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)  # this thread only, on Linux
    except (AttributeError, OSError) as exc:  # other systems: the thread runs at normal priority
        log.debug("learning: could not lower the worker thread's priority: %s", exc)


class BackgroundWorker:
    """``await worker.run(fn, *args)``: ``fn`` runs in one low-priority thread, calls in order."""

    def __init__(self, name: str = "learning"):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=_lower_priority)

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
