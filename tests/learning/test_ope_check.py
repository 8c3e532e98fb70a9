"""The gate's logged-traffic check: off-policy estimates veto a candidate the logs show is worse, and
keep out of the way where the logs cannot tell (no exploration)."""
from __future__ import annotations

import asyncio

import numpy as np

from router_gateway.domain.record import RequestRecord
from router_gateway.learning.gate import GateResult
from router_gateway.learning.graders import Grade
from router_gateway.learning.ope_check import ope_check
from router_gateway.learning.store import LabelStore
from router_gateway.state.request_log import RequestLog
from tests.support.learning_data import EXPERTS, make_loop, topic_data

COST = np.zeros(3)  # equal prices: utility is the grade


def _explored_logs(n: int = 300, seed: int = 0):
    """Three experts; expert t is right (1) on topic t and wrong (0) elsewhere. The logging policy
    drew the expert uniformly (propensity 1/3) and only the logged answer is graded."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 3, n)
    logged = rng.integers(0, 3, n)
    Y = np.full((n, 3), np.nan)
    Y[np.arange(n), logged] = (logged == topic).astype(float)
    right = np.eye(3)[topic]                     # a router that knows the topic
    wrong = np.eye(3)[(topic + 1) % 3]           # one that is always wrong
    return Y, logged, np.full(n, 1 / 3), right, wrong


def test_logs_with_exploration_veto_a_worse_candidate_and_pass_a_better_one():
    Y, logged, p, right, wrong = _explored_logs()
    worse = ope_check(Y, logged, p, wrong, right, COST, 0.0, min_ess=30)
    better = ope_check(Y, logged, p, right, wrong, COST, 0.0, min_ess=30)
    assert worse.veto and worse.ess >= 30 and worse.candidate < 0.1 and worse.live > 0.9
    assert not better.veto and better.candidate > 0.9


def test_logs_without_exploration_have_no_opinion_where_the_candidate_differs():
    Y, _, _, right, wrong = _explored_logs()
    logged = np.argmax(right, axis=1)  # the live router chose, always, with propensity 1
    Y = np.full(Y.shape, np.nan)
    Y[np.arange(len(logged)), logged] = 1.0
    out = ope_check(Y, logged, np.ones(len(logged)), wrong, right, COST, 0.0, min_ess=30)
    assert out.ess == 0 and not out.veto and "no opinion" in out.reason


def test_no_logged_propensity_no_check():
    Y, logged, _, right, wrong = _explored_logs(30)
    assert ope_check(Y, logged, np.full(30, np.nan), wrong, right, COST, 0.0, min_ess=1) is None


def test_label_store_reads_the_logged_propensity_from_the_request_log(tmp_path):
    db = tmp_path / "log.db"

    async def write_log():
        log = RequestLog(db, flush_interval_ms=10)
        await log.start()
        log.record(RequestRecord("req-a", 1.0, status=200, chosen_expert="x", propensity=0.25))
        log.record(RequestRecord("req-b", 1.0, status=200, chosen_expert="x", propensity=None))  # a fallback
        await log.close()

    asyncio.run(write_log())
    store = LabelStore(db)
    try:
        for digest, rid in (("d1", "req-a"), ("d2", "req-b"), ("d3", "req-other-replica")):
            store.add(digest, np.ones(4, dtype=np.float32), [Grade("x", 1.0, "judge:j", 0.0)], answer_costs={},
                      request_id=rid, live_expert="x")
        got = store.logged_propensities(["d1", "d2", "d3"])
    finally:
        store.close()
    assert got[0] == 0.25 and np.isnan(got[1]) and np.isnan(got[2])
    alone = LabelStore(tmp_path / "labels-only.db")  # no request log in this database (the replay)
    try:
        alone.add("d1", np.ones(4, dtype=np.float32), [Grade("x", 1.0, "judge:j", 0.0)], answer_costs={},
                  request_id="req-a", live_expert="x")
        assert np.isnan(alone.logged_propensities(["d1"])).all()
    finally:
        alone.close()


def test_a_retrain_reads_the_logs_and_their_veto_overrules_the_labelled_prompts(tmp_path):
    """Traffic explored uniformly (propensity 1/3, as logged by the real request log), only the logged
    answer graded: the retrain's gate carries the logged-traffic estimate; and where the logs show the
    candidate worse, a gate that passed on the labelled prompts does not pass."""
    n = 300
    X, Y = topic_data(n)
    logged = np.random.default_rng(1).integers(0, 3, n)
    db = tmp_path / "log.db"

    async def write_log():
        log = RequestLog(db, flush_interval_ms=10)
        await log.start()
        for i in range(n):
            log.record(RequestRecord(f"req-{i}", float(i), status=200, chosen_expert=EXPERTS[logged[i]],
                                     propensity=1 / 3))
        await log.close()

    asyncio.run(write_log())
    store = LabelStore(db)
    try:
        for i in range(n):
            j = int(logged[i])
            store.add(f"d{i:05d}", X[i], [Grade(EXPERTS[j], float(Y[i, j]), "judge:x", 0.001)],
                      answer_costs={EXPERTS[j]: 0.0}, request_id=f"req-{i}", live_expert=EXPERTS[j], ts=float(i))
        loop, _ = make_loop(tmp_path, store, confirm=1)
        out = loop.retrain(promote=False)
        data = store.training_set(EXPERTS)
        right = np.eye(3)[np.argmax(X[:, :3], axis=1)]
        passed = GateResult(True, n, 0.0, 0.0, 0.0, 0.0, "labelled prompts: passed")
        vetoed = loop._with_ope(passed, data, 1.0 - right, right)
    finally:
        store.close()
    ope = out.gate.ope
    assert ope is not None and ope["rows"] == n and ope["ess"] >= 30
    assert not ope["veto"] and ope["candidate"] > ope["live"]  # the learnt topics beat `strongest` in the logs too
    assert not vetoed.passed and vetoed.ope["veto"] and "below live" in vetoed.reason
