"""Shutdown finishes even when an await inside a background task swallows its cancellation, as a
redis-py reply was seen to do (a hung two-replica test stopped a whole CI run)."""
from __future__ import annotations

import asyncio

from router_gateway.state.expert_state import ExpertState
from router_gateway.state.shared_state import SharedState
from router_gateway.task_stop import stop_tasks


async def _swallow_one_cancellation(entered: asyncio.Event | None = None) -> None:
    """What redis-py did: the await returns normally although the task was cancelled meanwhile."""
    if entered is not None:
        entered.set()
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        pass


def test_stopping_cancels_again_a_task_that_swallowed_its_first_cancellation():
    async def stubborn(swallowed: list):
        await _swallow_one_cancellation()
        swallowed.append(True)
        await asyncio.sleep(60)

    async def go():
        swallowed: list = []
        task = asyncio.create_task(stubborn(swallowed))
        await asyncio.sleep(0)
        await asyncio.wait_for(stop_tasks([task], "test", wait_s=0.05), 5)
        return task.done(), swallowed

    done, swallowed = asyncio.run(go())
    assert done and swallowed == [True]


class _QuietRedis:
    async def delete(self, *keys):
        return 0

    async def aclose(self):
        return None


def test_shared_state_closes_when_its_sync_swallowed_the_cancellation():
    async def go():
        shared = SharedState("redis://127.0.0.1:1/0", ExpertState({}), sync_interval_s=0.01)
        entered = asyncio.Event()
        shared._redis, shared.connected = _QuietRedis(), True
        shared.sync = lambda: _swallow_one_cancellation(entered)
        shared._task = asyncio.create_task(shared._loop())
        await asyncio.wait_for(entered.wait(), 5)
        closing = asyncio.create_task(shared.close())
        done, _ = await asyncio.wait([closing], timeout=5)  # hung forever before: the loop slept on
        if closing not in done:  # leave nothing running, so that this fails instead of hanging
            shared.sync = lambda: asyncio.sleep(0)
            await stop_tasks([shared._task], "test", wait_s=0.05)
            await closing
        return closing in done and shared._task.done()

    assert asyncio.run(go())


def test_shared_state_keeps_syncing_after_a_reconnect_that_failed_half_way():
    """Redis answered the reconnect's ping, then went away before its sync: the loop used to die with
    that error (no sync ever again); now it marks Redis down and tries again."""
    async def go():
        shared = SharedState("redis://127.0.0.1:1/0", ExpertState({}), sync_interval_s=0.01)
        shared._redis = _QuietRedis()
        calls = []

        async def reconnect():
            calls.append("reconnect")
            if len(calls) == 1:
                shared.connected = True
                raise ConnectionError("gone again")

        shared._try_reconnect = reconnect
        shared._task = asyncio.create_task(shared._loop())
        for _ in range(500):
            if len(calls) >= 3:
                break
            await asyncio.sleep(0.01)
        alive = not shared._task.done()
        await shared.close()
        return calls, alive, shared.connected

    calls, alive, connected = asyncio.run(go())
    assert alive and len(calls) >= 3 and not connected
