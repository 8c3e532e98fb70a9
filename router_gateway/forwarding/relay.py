"""The whole life of one relayed stream, from its first event to its end, with one ``finally``.

A stream answer passes through several hands: the provider reads the expert's events, the forwarder
holds the expert's in-flight slot and health, the pipeline writes the request's record and holds the
runtime, the HTTP handler sends the events. Each of them has something to do when the stream ends, and
a stream can end in several ways: the expert's ``[DONE]``, an upstream failure (an error event ends the
stream), a bug while relaying, the client leaving, the gateway cutting it at the end of its drain.

``Relay`` is the one place where that end happens. Whoever has work to do when the stream ends
registers it with ``on_end``; ``aclose`` (called at the end of the events, on an exception, or by the
consumer when it stops early) closes the upstream and then calls every ``on_end`` with the stream's
``StreamOutcome``, once, in registration order, each even if an earlier one failed. The outcome is
written only by the relay and the events source it runs, and handed over explicitly.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable


@dataclass(slots=True)
class StreamOutcome:
    """How a relayed stream ended."""

    status: int = 200  # the status it opened with, or the one its error event stands for (502, 504)
    usage: dict | None = None  # the expert's usage (its last report)
    expert_error: str | None = None  # the expert broke or flagged the stream: counts against its health
    done: bool = False  # the stream reached its complete end (the expert's data: [DONE])
    cut: bool = False  # closed before its end: the client left or the gateway cut it
    bug: Exception | None = None  # raised while relaying: a gateway bug


EndHook = Callable[[StreamOutcome], None]


class Relay:
    """An async iterator of SSE chunks that runs everything a stream's end requires exactly once.

    ``events`` is called with the relay's ``outcome`` and returns the events source, which records in
    that outcome what only it can see (usage, the expert's errors, ``done``); ``close_upstream``
    closes the expert's response so it stops generating."""

    def __init__(self, events: Callable[[StreamOutcome], AsyncIterator[bytes]],
                 close_upstream: Callable[[], Awaitable[None]] | None = None,
                 outcome: StreamOutcome | None = None):
        self.outcome = outcome if outcome is not None else StreamOutcome()
        self._events = events(self.outcome)
        self._close_upstream = close_upstream
        self._ends: list[EndHook] = []
        self._taps: list[Callable[[bytes], None]] = []
        self._exhausted = False
        self._closed = False

    def on_end(self, hook: EndHook) -> None:
        """Run ``hook(outcome)`` when the stream ends, after those registered before it."""
        self._ends.append(hook)

    def tap(self, watch: Callable[[bytes], None]) -> None:
        """Show every chunk to ``watch`` as it passes (e.g. to remember a Responses API id)."""
        self._taps.append(watch)

    def __aiter__(self) -> Relay:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        try:
            chunk = await self._events.__anext__()
            for watch in self._taps:
                watch(chunk)
            return chunk
        except StopAsyncIteration:
            self._exhausted = True
            await self.aclose()
            raise
        except asyncio.CancelledError:  # the client left or the gateway is stopping, mid-read
            await self.aclose()
            raise
        except Exception as exc:  # a bug: the record says what it was
            self.outcome.bug = exc
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """End the stream (idempotent): close the source and the upstream, then run the end hooks."""
        if self._closed:
            return
        self._closed = True
        if not self._exhausted and self.outcome.bug is None:
            self.outcome.cut = True  # even after [DONE]: the client did not get the end of the stream
        try:
            await self._events.aclose()
            if self._close_upstream is not None:
                await self._close_upstream()
        finally:  # however closing went: the slot, the health, the record and the runtime all settle
            _run_all(self._ends, self.outcome)


def _run_all(hooks: list[EndHook], outcome: StreamOutcome) -> None:
    """Call every hook; the first failure is raised after all of them ran."""
    first: BaseException | None = None
    for hook in hooks:
        try:
            hook(outcome)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the other hooks
            first = first or exc
    if first is not None:
        raise first
