"""Several replicas, one Redis (a real redis-server): labels made on one replica are used by a
retrain on another, and every replica swaps to the promoted router."""
from __future__ import annotations

import asyncio

import numpy as np

from router_gateway.container import Gateway, GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.learning.graders import Grade
from router_gateway.learning.replicas import LabelStream, encode_row
from router_gateway.learning.store import LabelStore
from tests.support.learning_gateway import (
    TopicEmbedder,
    drain,
    judge_connect,
    learning_config,
    serve,
)


def replica_config(tmp_path, name: str):
    """The same experts.yaml for both replicas but each its own log database; the artifacts folder
    is shared (promote.artifacts must be a shared folder)."""
    # nothing retrains by itself (the test picks the replica); null_z 0: the candidate must beat its
    # shuffled-label controls' mean. At 1 this test of the replicas' mechanics failed in a CI run
    # (+1.29 sd here; the controls shuffle rows in store order, which follows the shadow jobs' timing)
    text = learning_config(tmp_path, min_labels=1000, promote={"gate": {"min_rows": 4, "z": 1.0, "null_z": 0.0}})
    return parse_config(text.replace(str(tmp_path / "log.db"), str(tmp_path / f"{name}.db")))


def test_labels_from_replica_a_train_replica_b_and_both_swap(tmp_path, redis_url):
    calls: list = []

    async def go():
        replicas = []
        for name in ("a", "b"):
            g = Gateway(GatewayOptions(config=replica_config(tmp_path, name), connect=judge_connect(calls),
                                       embedder=TopicEmbedder(), health_interval_s=0, redis_url=redis_url))
            await g.start()
            replicas.append(g)
        a, b = replicas
        try:
            await serve(a, 40)  # only replica A serves traffic, so only A makes labels
            await drain(a)
            made_on_a = (await a.learning.status())["labels"]["prompts"]
            outcome = await b.learning.retrain(promote=True)
            on_b = (await b.learning.status())["labels"]["prompts"]
            from_a = b.learning.stats["labels_from_replicas"]
            b.learning.label_stream.last_id = b"0-0"  # read the whole stream again: nothing is new
            again = await b.learning.ingest_shared()
            for _ in range(100):  # A follows the pointer B published (polled every 2 s)
                if a.runtime.config.profiles["auto"].router == "learned:auto":
                    break
                await asyncio.sleep(0.1)
            routed = {name: await serve(g, 4, start=200) for name, g in (("a", a), ("b", b))}
            return made_on_a, on_b, outcome, routed, again, from_a, [
                g.runtime.config.profiles["auto"].router for g in replicas]
        finally:
            for g in replicas:
                await g.close()

    made_on_a, on_b, outcome, routed, again, from_a, routers = asyncio.run(go())
    assert made_on_a >= 16
    assert on_b == made_on_a and from_a == made_on_a  # B trained on A's labels
    assert outcome["labelled"] == made_on_a and outcome["promoted"], outcome["gate"]
    assert routers == ["learned:auto", "learned:auto"]  # both replicas swapped
    # both now send maths (odd) to cheap and poems to dear
    assert routed["a"] == routed["b"] == ["dear", "cheap", "dear", "cheap"]
    assert again == 0


def test_ingesting_a_row_twice_keeps_one_label_and_the_stream_stays_bounded(tmp_path, redis_url):
    import redis.asyncio as aioredis

    async def go():
        client = aioredis.from_url(redis_url)
        writer = LabelStream(lambda: client, "t:", "replica-a", max_rows=100)
        reader = LabelStream(lambda: client, "t:", "replica-b", max_rows=100)
        x = np.ones(8, dtype=np.float32)
        for i in range(1000):
            row = encode_row(f"d{i}", x * i, [Grade("cheap", 1.0, "judge:j", 0.001)], {"cheap": 0.01},
                             replica="replica-a", request_id=f"r{i}", live_expert="dear", prompt=None, ts=float(i))
            await writer.publish(row)
        length = await client.xlen("t:labels".replace("labels", "learning:labels"))
        rows = await reader.read_new()
        own = await writer.read_new()  # a replica skips its own rows
        await client.aclose()
        return length, rows, own

    length, rows, own = asyncio.run(go())
    assert length < 300  # trimmed to about max_rows (approximate trimming), not 1000
    assert own == [] and len(rows) == length
    store = LabelStore(tmp_path / "b.db")
    new = [store.ingest(**{k: v for k, v in r.items() if k != "replica"})[0] for r in rows + rows]
    assert sum(new) == length  # the second pass added nothing
    assert store.counts() == {"prompts": length, "grades": length}
    data = store.training_set(["cheap", "dear"])
    assert np.allclose(data.X[0], rows[0]["embedding"])
    store.close()
