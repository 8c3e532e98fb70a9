"""Async micro-batching and a bounded cache in front of an embedder.

Concurrent requests are embedded together: the first waiting text opens a batch, which closes after
``max_wait_ms`` or at ``max_batch`` texts, then runs in one worker thread so the event loop never
blocks on the model. Repeated prompts hit an LRU cache keyed by the text.

An embedder that declares ``inline = True`` (the static token-table lookups: tens of microseconds
per prompt) is called directly on the event loop instead: the queue, the executor hand-off and the
two wake-ups cost more CPU and latency than the embedding itself (issue 19's profile: ~0.2 ms of a
~0.8 ms decision), and batching saves such an embedder nothing.
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from router_gateway.embedding.base import Embedder
from router_gateway.task_stop import stop_tasks


class LRUCache:
    """A small bounded mapping from text to vector."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> np.ndarray | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: str, value: np.ndarray) -> None:
        if self.capacity <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.capacity:
            self._data.popitem(last=False)


class BatchingEmbedder:
    """``await embed_one(text)`` from many coroutines; texts are embedded in micro-batches."""

    def __init__(self, embedder: Embedder, max_batch: int = 32, max_wait_ms: float = 0.0,
                 cache_size: int = 4096, on_batch: Callable[[int], None] | None = None):
        self.embedder = embedder
        self.info = embedder.info
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.cache = LRUCache(cache_size)
        self._on_batch = on_batch
        self._queue: asyncio.Queue[tuple[str, asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self.inline = bool(getattr(embedder, "inline", False))

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="embed-batcher")

    async def close(self) -> None:
        if self._task:
            await stop_tasks([self._task], "embedding batcher")
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def embed_one(self, text: str) -> np.ndarray:
        cached = self.cache.get(text)
        if cached is not None:
            return cached
        if self.inline:
            vector = self.embedder.embed([text])[0]
            if self._on_batch:
                self._on_batch(1)
            self.cache.put(text, vector)
            return vector
        if self._queue is None:
            raise RuntimeError("BatchingEmbedder.start() was not awaited")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((text, future))
        return await future

    async def _run(self) -> None:
        """Greedy batching: take everything already queued (up to max_batch), waiting at most
        ``max_wait`` for more. With max_wait 0 a lone request pays no delay, and under load the
        requests that arrive while one batch runs form the next batch."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            await self._embed_batch(loop, batch)

    async def _embed_batch(self, loop: asyncio.AbstractEventLoop,
                           batch: list[tuple[str, asyncio.Future]]) -> None:
        unique = list(dict.fromkeys(text for text, _ in batch))
        try:
            vectors = await loop.run_in_executor(self._pool, self.embedder.embed, unique)
        except Exception as exc:  # the model failed: every waiter gets the error, the loop goes on
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        if self._on_batch:
            self._on_batch(len(unique))
        by_text = dict(zip(unique, vectors))
        for text, vec in by_text.items():
            self.cache.put(text, vec)
        for text, future in batch:
            if not future.done():
                future.set_result(by_text[text])
