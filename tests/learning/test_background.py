"""The learning loop's CPU work runs in one low-priority thread, not on the event loop."""
from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from router_gateway.learning.background import NICE, BackgroundWorker


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_work_runs_in_a_low_priority_thread_off_the_event_loop():
    def where():
        return threading.get_ident(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    async def go():
        worker = BackgroundWorker()
        try:
            return threading.get_ident(), await worker.run(where), await worker.run(where)
        finally:
            worker.close()

    loop_thread, (first, nice), (second, _) = asyncio.run(go())
    assert first != loop_thread and first == second  # one thread, not the event loop's
    assert nice == NICE  # the kernel runs the event loop's thread first
