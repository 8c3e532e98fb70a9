"""The learning loop's CPU work runs in one low-priority thread, not on the event loop."""
from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from router_gateway.learning.background import NICE, BackgroundWorker
from router_gateway.learning.service import _cancel_all


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


def test_closing_stops_a_task_that_swallowed_its_first_cancellation():
    """A shadow worker was seen back at ``queue.get()`` after close() cancelled it (about 1 close in
    10 of the replicas test); cancel-then-gather then waited forever. close() cancels again."""
    async def stubborn(swallowed: list):
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            swallowed.append(True)  # a library below turned the cancellation into a return
        await asyncio.sleep(60)

    async def go():
        swallowed: list = []
        task = asyncio.create_task(stubborn(swallowed))
        await asyncio.sleep(0)
        await asyncio.wait_for(_cancel_all([task], wait_s=0.05), 5)
        return task.done(), swallowed

    done, swallowed = asyncio.run(go())
    assert done and swallowed == [True]
