"""Cheap embedders (``inline = True``) run on the event loop; the others keep the worker thread."""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from router_gateway.embedding.batcher import BatchingEmbedder
from tests.support.fakes import HashEmbedder


class ThreadRecordingEmbedder(HashEmbedder):
    def __init__(self, inline: bool, fail: bool = False):
        super().__init__()
        self.inline = inline
        self.fail = fail
        self.threads: list[str] = []

    def embed(self, texts):
        self.threads.append(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("model broke")
        return super().embed(texts)


def _run(inner: ThreadRecordingEmbedder, texts: list[str]):
    async def go():
        sizes: list[int] = []
        batcher = BatchingEmbedder(inner, max_batch=64, max_wait_ms=0, on_batch=sizes.append)
        await batcher.start()
        try:
            vectors = await asyncio.gather(*(batcher.embed_one(t) for t in texts))
            again = await batcher.embed_one(texts[0])
        finally:
            await batcher.close()
        return vectors, again, sizes, threading.current_thread().name
    return asyncio.run(go())


def test_inline_embedder_runs_on_the_event_loop_and_is_cached():
    inner = ThreadRecordingEmbedder(inline=True)
    vectors, again, sizes, loop_thread = _run(inner, [f"prompt {i}" for i in range(5)])
    assert inner.threads == [loop_thread] * 5  # no worker thread, one call per text, none for the cache hit
    assert inner.calls == [1] * 5 and sizes == [1] * 5
    np.testing.assert_array_equal(again, vectors[0])
    np.testing.assert_array_equal(vectors[2], HashEmbedder().embed(["prompt 2"])[0])


def test_other_embedders_keep_the_worker_thread():
    inner = ThreadRecordingEmbedder(inline=False)
    _, _, _, loop_thread = _run(inner, [f"prompt {i}" for i in range(5)])
    assert inner.threads and all(t.startswith("embed") and t != loop_thread for t in inner.threads)


def test_inline_failure_reaches_the_caller():
    with pytest.raises(RuntimeError, match="model broke"):
        _run(ThreadRecordingEmbedder(inline=True, fail=True), ["a prompt"])


def test_static_embedders_declare_themselves_inline():
    pytest.importorskip("tokenizers")
    from router_gateway.embedding.static_backend import StaticEmbedder
    assert StaticEmbedder.inline is True
