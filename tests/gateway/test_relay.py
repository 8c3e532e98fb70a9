"""forwarding.relay: however a stream ends, its upstream is closed and every end hook runs exactly once,
with the outcome saying how it ended."""
from __future__ import annotations

import asyncio

import pytest

from router_gateway.forwarding.relay import Relay, StreamOutcome
from tests.support.polling import wait_until


def make_relay(events: list[bytes], fail_at: int | None = None, wait_at: int | None = None,
               close_fails: bool = False, first_hook=None):
    closed: list[str] = []
    ended: list[StreamOutcome] = []

    async def source(outcome: StreamOutcome):
        for i, event in enumerate(events):
            if i == fail_at:
                raise RuntimeError("a bug in the relay")
            if i == wait_at:
                await asyncio.sleep(3600)
            yield event
        outcome.done = True

    async def close_upstream():
        closed.append("upstream")
        if close_fails:
            raise OSError("reset while closing")

    relay = Relay(source, close_upstream, StreamOutcome(status=200))
    if first_hook is not None:
        relay.on_end(first_hook)
    relay.on_end(lambda outcome: ended.append(("forwarder", outcome)))
    relay.on_end(lambda outcome: ended.append(("pipeline", outcome)))
    return relay, closed, ended


def test_a_complete_stream_ends_once_when_its_events_run_out():
    async def scenario():
        relay, closed, ended = make_relay([b"a", b"b"])
        assert [chunk async for chunk in relay] == [b"a", b"b"]
        await relay.aclose()  # the consumer's own close after the end changes nothing
        return closed, ended

    closed, ended = asyncio.run(scenario())
    assert closed == ["upstream"] and [who for who, _ in ended] == ["forwarder", "pipeline"]
    outcome = ended[0][1]
    assert outcome.done and not outcome.cut and outcome.bug is None


def test_a_consumer_that_stops_early_cuts_the_stream_and_still_ends_it():
    async def scenario():
        relay, closed, ended = make_relay([b"a", b"b", b"c"])
        assert await anext(relay) == b"a"
        await relay.aclose()
        await relay.aclose()
        return closed, ended

    closed, ended = asyncio.run(scenario())
    assert closed == ["upstream"] and len(ended) == 2
    assert ended[0][1].cut and not ended[0][1].done


def test_a_stream_closed_before_its_first_read_still_ends():
    """The HTTP handler may fail before it reads anything: the upstream and the record still settle."""
    async def scenario():
        relay, closed, ended = make_relay([b"a"])
        await relay.aclose()
        return closed, ended

    closed, ended = asyncio.run(scenario())
    assert closed == ["upstream"] and len(ended) == 2 and ended[0][1].cut


def test_a_cancelled_read_ends_the_stream_as_cut():
    """The client left while the relay waited on the expert: the read is cancelled inside the relay."""
    async def scenario():
        relay, closed, ended = make_relay([b"a", b"b"], wait_at=1)
        got: list[bytes] = []

        async def consume():
            async for chunk in relay:
                got.append(chunk)
        task = asyncio.create_task(consume())
        assert await wait_until(lambda: got, timeout=5)  # the first chunk passed: the relay waits on the second
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return closed, ended

    closed, ended = asyncio.run(scenario())
    assert closed == ["upstream"] and len(ended) == 2 and ended[0][1].cut


def test_a_bug_while_relaying_is_the_outcome_not_a_cut():
    async def scenario():
        relay, closed, ended = make_relay([b"a", b"b"], fail_at=1)
        assert await anext(relay) == b"a"
        with pytest.raises(RuntimeError):
            await anext(relay)
        return closed, ended

    closed, ended = asyncio.run(scenario())
    outcome = ended[0][1]
    assert closed == ["upstream"] and isinstance(outcome.bug, RuntimeError) and not outcome.cut


def test_the_end_hooks_run_even_when_closing_the_upstream_fails():
    async def scenario():
        relay, closed, ended = make_relay([b"a"], close_fails=True)
        with pytest.raises(OSError):
            await relay.aclose()
        return closed, ended

    closed, ended = asyncio.run(scenario())
    assert closed == ["upstream"] and [who for who, _ in ended] == ["forwarder", "pipeline"]


def test_a_failing_end_hook_does_not_skip_the_later_ones():
    async def scenario():
        relay, _, ended = make_relay([b"a"], first_hook=lambda outcome: 1 / 0)  # fails ahead of the others
        with pytest.raises(ZeroDivisionError):
            await relay.aclose()
        return ended

    ended = asyncio.run(scenario())
    assert [who for who, _ in ended] == ["forwarder", "pipeline"]


def test_taps_see_every_chunk_as_it_passes():
    async def scenario():
        relay, _, _ = make_relay([b"a", b"b"])
        seen: list[bytes] = []
        relay.tap(seen.append)
        got = [chunk async for chunk in relay]
        return got, seen

    got, seen = asyncio.run(scenario())
    assert got == seen == [b"a", b"b"]
