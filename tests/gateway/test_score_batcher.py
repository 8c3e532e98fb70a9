"""Concurrent routing decisions share one router call (routing/score_batcher.py), and get the scores
each would get alone: the batcher itself, the kNN scan behind it, and the routing service end to end."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from router_gateway.domain.config import parse_config
from router_gateway.domain.protocol import parse_chat_request
from router_gateway.embedding.batcher import BatchingEmbedder
from router_gateway.routing.router_set import build_router_set
from router_gateway.routing.score_batcher import ScoreBatcher
from router_gateway.routing.service import RoutingService
from router_gateway.state.expert_state import ExpertState
from routers.artifact import load_artifact, save_artifact
from routers.knn import KNNRouter
from tests.support.configs import config_text, expert
from tests.support.fakes import HashEmbedder


def _rows_times_ten(calls: list[int]):
    def score(X: np.ndarray) -> np.ndarray:
        calls.append(len(X))
        return X * 10
    return score


def test_calls_made_in_one_loop_turn_share_one_router_call():
    calls: list[int] = []

    async def go():
        batcher = ScoreBatcher(_rows_times_ten(calls))
        together = await asyncio.gather(*(batcher.score(np.array([float(i)])) for i in range(20)))
        alone = await batcher.score(np.array([7.0]))
        return together, alone, batcher
    together, alone, batcher = asyncio.run(go())
    assert calls == [20, 1]  # one call for the twenty, one for the lone request
    assert [float(r[0]) for r in together] == [10.0 * i for i in range(20)]  # each its own row
    assert float(alone[0]) == 70.0
    assert (batcher.batches, batcher.prompts) == (2, 21)


def test_a_full_batch_is_scored_at_once_and_the_rest_in_the_next():
    calls: list[int] = []

    async def go():
        batcher = ScoreBatcher(_rows_times_ten(calls), max_batch=8)
        return await asyncio.gather(*(batcher.score(np.array([float(i)])) for i in range(11)))
    out = asyncio.run(go())
    assert calls == [8, 3]
    assert [float(r[0]) for r in out] == [10.0 * i for i in range(11)]


def test_the_routers_error_reaches_every_waiter_and_a_cancelled_waiter_is_skipped():
    calls: list[int] = []

    def failing(X):
        calls.append(len(X))
        raise ValueError("router broke")

    async def go():
        batcher = ScoreBatcher(failing)
        results = await asyncio.gather(*(batcher.score(np.zeros(2)) for _ in range(3)), return_exceptions=True)
        ok = ScoreBatcher(_rows_times_ten(calls))
        gone = asyncio.ensure_future(ok.score(np.ones(2)))
        kept = asyncio.ensure_future(ok.score(np.full(2, 2.0)))
        await asyncio.sleep(0)  # both are queued; the flush comes in a later turn
        gone.cancel()
        return results, await kept, gone
    results, kept, gone = asyncio.run(go())
    assert all(isinstance(r, ValueError) and "router broke" in str(r) for r in results)
    assert calls == [3, 1]  # the cancelled request was not scored
    assert kept.tolist() == [20.0, 20.0] and gone.cancelled()


def test_knn_scores_a_batch_as_it_scores_each_prompt_alone(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((600, 32)).astype(np.float32)
    Y = rng.uniform(size=(600, 3))
    Y[rng.uniform(size=Y.shape) < 0.4] = np.nan  # partial labels, as from live traffic
    router = KNNRouter(k=25, shrinkage=2.0).fit(X, Y)
    Q = rng.standard_normal((40, 32)).astype(np.float32)
    alone = np.stack([router.predict_scores(q[None, :])[0] for q in Q])
    for n in (2, 15, 16, 40):  # both paths of the scan: row by row (< 16) and one product
        assert np.allclose(router.predict_scores(Q[:n]), alone[:n], atol=1e-6)
    # the reference: the plain definition over the untransposed rows
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    q = Q[0] / np.linalg.norm(Q[0])
    nearest = np.argsort(-(Xn @ q), kind="stable")[:25]
    idx, sim = router.neighbours(Q[:1])
    assert sorted(idx[0].tolist()) == sorted(nearest.tolist())
    assert np.allclose(sim[0], np.sort(Xn @ q)[::-1][:25], atol=1e-6)
    # the artifact still stores the training rows as (n, d) and loads them back
    save_artifact(router, tmp_path / "knn", embedder={"name": "x", "dim": 32})
    loaded, _ = load_artifact(tmp_path / "knn")
    assert loaded.X_.shape == (600, 32) and loaded._xt.flags["C_CONTIGUOUS"]
    assert np.allclose(loaded.predict_scores(Q), alone, atol=1e-6)


@pytest.fixture
def knn_service(tmp_path):
    embedder = HashEmbedder()
    prompts = [f"training prompt {i} about topic {i % 7}" for i in range(300)]
    rng = np.random.default_rng(0)
    router = KNNRouter(k=20).fit(embedder.embed(prompts), rng.uniform(size=(300, 2)), experts=["a", "b"])
    save_artifact(router, tmp_path / "art", embedder=embedder.info.as_dict())
    experts = {name: expert("http://x/v1", name, 1, 1) for name in ("a", "b")}
    config = parse_config(config_text(experts, routers={"k": {"type": "knn", "artifact": str(tmp_path / "art")}},
                                      profiles={"auto": {"router": "k"}}))

    def make(sizes: list[int]):
        return RoutingService(config, build_router_set(config, embedder.info),
                              BatchingEmbedder(embedder, 64, 1.0, cache_size=0), ExpertState(),
                              on_score_batch=sizes.append)
    return make


def test_concurrent_decisions_are_batched_and_decide_as_they_would_alone(knn_service):
    async def decide_all(concurrent: bool):
        sizes: list[int] = []
        service = knn_service(sizes)
        await service.embedder.start()
        requests = [parse_chat_request({"model": "auto", "messages": [
            {"role": "user", "content": f"question {i} about topic {i % 5}"}]}) for i in range(24)]
        try:
            if concurrent:
                out = await asyncio.gather(*(service.decide(r, 100, f"req-{i}") for i, r in enumerate(requests)))
            else:
                out = [await service.decide(r, 100, f"req-{i}") for i, r in enumerate(requests)]
        finally:
            await service.embedder.close()
        return out, sizes
    together, sizes = asyncio.run(decide_all(True))
    assert sum(sizes) == 24 and len(sizes) < 24  # the concurrent decisions shared calls (metrics see it)
    alone, sizes = asyncio.run(decide_all(False))
    assert sizes == [1] * 24  # one at a time: a batch of one each
    for a, b in zip(together, alone):
        assert a.chosen == b.chosen
        assert [c.score for c in a.candidates] == pytest.approx([c.score for c in b.candidates], abs=1e-6)
