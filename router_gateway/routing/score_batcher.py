"""One router call for the prompts of every request that reaches scoring in the same event-loop turn.

Why: the kNN router reads its whole training matrix (4,800 x 384 float32 = 7.4 MB in the bench) for
every prompt. In a busy gateway that matrix has left the CPU caches between two requests, so one
prompt's scan runs at memory speed (~0.9 ms in the gateway against ~0.2 ms in a tight loop); a batch of
B prompts reads it once (one B x d by d x n product). Under load, requests arrive together and the
batch grows with the load; a lone request pays one extra loop turn (microseconds), no timer.

Only routers that declare ``batches_scores`` (their rows are scored independently, so a batch gives
each prompt exactly what it would get alone) go through here; the others are scored inline.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

import numpy as np

log = logging.getLogger("router_gateway.routing")


class ScoreBatcher:
    """Collects (prompt embedding -> scores) calls made in one loop turn and answers them together."""

    def __init__(self, score_rows: Callable[[np.ndarray], np.ndarray], max_batch: int = 64,
                 on_batch: Callable[[int], None] | None = None):
        self._score_rows = score_rows
        self.max_batch = max(1, int(max_batch))
        self._on_batch = on_batch  # metrics: prompts per batch
        self._pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self.batches = 0  # flushed batches and the prompts in them (for the bench and tests)
        self.prompts = 0

    async def score(self, x: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((x, future))
        if len(self._pending) == 1:
            # runs after every callback already queued for this turn: the requests that are ready
            # now reach this point first and join the batch
            loop.call_soon(self._flush)
        elif len(self._pending) >= self.max_batch:
            self._flush()
        return await future

    def _flush(self) -> None:
        items, self._pending = self._pending, []
        items = [(x, f) for x, f in items if not f.done()]  # a cancelled request no longer waits
        if not items:
            return
        try:
            scores = self._score_rows(np.stack([x for x, _ in items]))
        except Exception as exc:  # every waiter gets the router's error, as it would alone
            for _, future in items:
                future.set_exception(exc)
            return
        for row, (_, future) in zip(scores, items):
            future.set_result(row)
        self.batches += 1
        self.prompts += len(items)
        if self._on_batch is not None:
            try:
                self._on_batch(len(items))
            except Exception:  # metrics must not fail the requests: they have their scores already
                log.exception("score batch observer failed")
