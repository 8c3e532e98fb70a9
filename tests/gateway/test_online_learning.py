"""A bandit router in the gateway: it chooses with a logged propensity and learns from feedback."""
from __future__ import annotations

import asyncio

import numpy as np

from router_gateway.container import Gateway, GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.domain.protocol import parse_chat_request
from router_gateway.pipeline import CallContext, ChatService
from routers.artifact import save_artifact
from routers.bandit import LinUCBRouter
from tests.support.configs import config_text, fake_experts
from tests.support.fakes import HashEmbedder, fake_connect


def test_bandit_chooses_with_propensity_and_learns_from_feedback(tmp_path):
    embedder = HashEmbedder()
    X = embedder.embed([f"prompt {i}" for i in range(40)])
    Y = np.column_stack([np.full(40, 0.4), np.full(40, 0.6)])
    bandit = LinUCBRouter(n_components=16, epsilon=0.2).fit(X, Y, experts=["oka", "okb"])
    save_artifact(bandit, tmp_path / "bandit", embedder=embedder.info.as_dict())
    config = parse_config(config_text(
        fake_experts({"oka": {}, "okb": {}}),
        routers={"b": {"type": "bandit", "artifact": str(tmp_path / "bandit")}},
        profiles={"auto": {"router": "b", "cost_weight": 0}}, log_path=tmp_path / "log.db", flush_interval_ms=20))

    async def go():
        gateway = Gateway(GatewayOptions(config=config, connect=fake_connect(), embedder=embedder,
                                         health_interval_s=0))
        await gateway.start()
        try:
            chat = ChatService(gateway)
            records = []
            for i in range(30):
                body = {"model": "auto", "messages": [{"role": "user", "content": f"question {i}"}]}
                out = await chat.handle(parse_chat_request(body), CallContext(f"req-{i}", body, 80))
                records.append((f"req-{i}", out.headers["x-router-expert"]))
            await gateway.request_log.flush()
            logged = [await gateway.request_log.get(rid) for rid, _ in records]
            router = gateway.runtime.routing.routers["b"].router
            a_before = router.A_.copy()
            learned = []
            for rid, expert in records:  # oka is secretly great, okb poor
                await gateway.request_log.add_feedback(rid, 1.0 if expert == "oka" else 0.0, {})
                learned.append(await gateway.online.learn(rid, 1.0 if expert == "oka" else 0.0))
            after = gateway.runtime.routing.routers["b"].router
            # hash embeddings are unrelated random vectors: judge on the prompts that got feedback
            xs = np.stack([await gateway.embedder.embed_one(f"question {i}") for i in range(30)])
            return logged, learned, a_before, after.A_.copy(), after.predict_scores(xs).mean(axis=0)
        finally:
            await gateway.close()

    logged, learned, a_before, a_after, scores = asyncio.run(go())
    propensities = {r["propensity"] for r in logged}
    assert propensities <= {0.9, 0.1} and 0.9 in propensities  # epsilon 0.2 over 2 experts
    assert {r["chosen_expert"] for r in logged} == {"oka", "okb"}  # it explored
    assert all(learned)
    assert not np.allclose(a_before, a_after)  # sufficient statistics moved
    assert scores[0] > scores[1]  # it now believes oka is the better expert (its prior said okb)
