"""The request log never drops a record it accepted: not when the flusher is cancelled at shutdown while its
write is still queued, and not when a write fails (the batch is kept for the next flush)."""
from __future__ import annotations

import asyncio
import sqlite3
import threading

from router_gateway.domain.record import RequestRecord
from router_gateway.state.request_log import RequestLog
from tests.support.polling import wait_until


def rows(path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT request_id FROM requests ORDER BY ts")]
    finally:
        db.close()


async def cancel_a_flush_queued_behind_a_busy_writer(log: RequestLog):
    """Record "a", start a flush while the one writer thread is busy, cancel that flush (as shutdown does).
    Returns the gate that frees the writer and the blocking job."""
    gate = threading.Event()
    blocker = asyncio.get_running_loop().run_in_executor(log._pool, gate.wait)  # the one writer is busy
    log.record(RequestRecord("a", 1.0))
    flushing = asyncio.create_task(log.flush())
    # the flush took the batch and queued its write behind the blocker (not started: the writer is busy)
    assert await wait_until(lambda: not log.is_pending("a"), timeout=5)
    flushing.cancel()
    await asyncio.gather(flushing, return_exceptions=True)
    return gate, blocker


def test_cancelled_flush_still_writes_the_batch(tmp_path):
    path = tmp_path / "log.db"

    async def scenario():
        log = RequestLog(path, flush_interval_ms=60_000)
        await log.start()
        gate, blocker = await cancel_a_flush_queued_behind_a_busy_writer(log)
        gate.set()
        await blocker
        await log.close()

    asyncio.run(scenario())
    assert rows(path) == ["a"]


def test_close_waits_for_a_cancelled_flush_whose_write_is_still_queued(tmp_path):
    """Shutdown cancels a flush whose write waits behind another job, then closes the log at once:
    the database must stay open until that write is done (CI once lost the record this way)."""
    path = tmp_path / "log.db"

    async def scenario():
        log = RequestLog(path, flush_interval_ms=60_000)
        await log.start()
        gate, blocker = await cancel_a_flush_queued_behind_a_busy_writer(log)
        threading.Timer(0.2, gate.set).start()  # the writer frees up only after close() has begun
        await log.close()
        await blocker

    asyncio.run(scenario())
    assert rows(path) == ["a"]


def test_failed_write_keeps_the_batch_for_the_next_flush(tmp_path):
    path = tmp_path / "log.db"

    async def scenario():
        log = RequestLog(path, flush_interval_ms=60_000)
        await log.start()
        real_write, calls = log._write, []

        def failing_once(batch):
            calls.append(len(batch))
            if len(calls) == 1:
                raise sqlite3.OperationalError("database is locked")
            real_write(batch)
        log._write = failing_once
        log.record(RequestRecord("a", 1.0))
        try:
            await log.flush()
        except sqlite3.OperationalError:
            pass
        log.record(RequestRecord("b", 2.0))
        await log.close()
        return calls

    assert asyncio.run(scenario()) == [1, 2]
    assert rows(path) == ["a", "b"]


def test_a_failed_write_of_a_cancelled_flush_is_retried_at_close(tmp_path):
    path = tmp_path / "log.db"

    async def scenario():
        log = RequestLog(path, flush_interval_ms=60_000)
        await log.start()
        real_write, calls = log._write, []
        gate = threading.Event()

        def slow_then_failing_once(batch):
            calls.append(len(batch))
            if len(calls) == 1:
                gate.wait()
                raise sqlite3.OperationalError("database is locked")
            real_write(batch)
        log._write = slow_then_failing_once
        log.record(RequestRecord("a", 1.0))
        flushing = asyncio.create_task(log.flush())
        assert await wait_until(lambda: calls, timeout=5)  # the write has started and waits for the gate
        flushing.cancel()  # nobody awaits the write any more when it fails
        await asyncio.gather(flushing, return_exceptions=True)
        threading.Timer(0.2, gate.set).start()
        await log.close()

    asyncio.run(scenario())
    assert rows(path) == ["a"]
