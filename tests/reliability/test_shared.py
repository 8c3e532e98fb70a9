"""Two gateway processes on one real Redis: limits, budgets and circuits hold in total; Redis going
away mid-run degrades to local state (said in /ready and the log) and resynchronises on return."""
from __future__ import annotations


import httpx
import numpy as np
import pytest

from router_gateway.state.keys import KeyStore
from tests.support.configs import ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, served_experts, write_config
from tests.support.polling import wait_for
from tests.support.servers import set_behaviour, start_gateway, start_redis, wait_gateway
from tests.support.usage import settled_spend

pytestmark = pytest.mark.redis
MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def pair(experts, redis_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shared")
    store = KeyStore(tmp / "keys.json")
    keys = {"admin": store.create("ops", ("admin",))[0], "rpm": store.create("rpm5", rpm=5)[0]}
    # good costs (11 * 0.1 + 7 * 0.2) / 1e6 = 2.5e-6 USD a request
    keys["budget"], budget_key = store.create("budget", budget_usd_day=4e-6, allowed_experts=("good",))
    keys["budget_id"] = budget_key.id  # to read its spend in Redis
    keys["plain"] = store.create("plain")[0]
    spec = {"good": {"url": experts["good"].url, "prior": 0.5},
            "switch": {"url": experts["switch"].url, "prior": 0.9}}
    profiles = {"auto": "{router: strong, cost_weight: 0, experts: [switch, good]}",
                "capped": "{router: strong, cost_weight: 0, experts: [good], budget: {usd_per_day: 4.0e-6}}"}
    server = "server: {health_interval_s: 30, breaker: {failure_threshold: 2, cooldown_s: 30}}"
    env = {"REDIS_URL": redis_server.url_redis, "ROUTER_GATEWAY_KEYS": str(store.path)}
    gateways = []
    for name in ("a", "b"):
        (tmp / name).mkdir()
        config = write_config(tmp / name / "experts.yaml", served_experts(spec), profiles=profiles,
                              routers=STRONG_AND_CHEAP, embedder=ONE_THREAD_EMBEDDER, extra=server)
        gateways.append(start_gateway(config, tmp / name, env=env, wait=False))
    for g in gateways:
        wait_gateway(g)
    yield gateways, keys, redis_server
    for g in gateways:
        g.stop()


def chat(gw, key: str, model: str = "auto") -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json={"model": model, "messages": MSG},
                      headers={"authorization": f"Bearer {key}"}, timeout=10)


def test_rate_limit_holds_in_total_across_replicas(pair):
    (a, b), keys, _ = pair
    statuses = [chat(g, keys["rpm"]).status_code for g in (a, b) * 5]
    assert sorted(statuses) == [200] * 5 + [429] * 5, statuses
    limited = chat(b, keys["rpm"])
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["type"] == "rate_limit_error"


def test_budget_holds_in_total_across_replicas(pair):
    (a, b), keys, redis = pair
    spend = lambda: settled_spend(redis.url_redis, keys["budget_id"]) or 0.0  # noqa: E731
    assert chat(a, keys["budget"]).status_code == 200  # 2.5e-6 spent
    assert wait_for(lambda: spend() > 0, 5)  # the answer's usage replaces its hold in Redis just after it
    assert chat(b, keys["budget"]).status_code == 200  # 5e-6 spent: over the 4e-6 budget now
    assert wait_for(lambda: spend() > 4e-6, 5)
    for g in (a, b):
        spent = chat(g, keys["budget"])
        assert spent.status_code == 429 and spent.json()["error"]["code"] == "insufficient_quota"


def test_a_profile_budget_holds_in_total_across_replicas(pair):
    """profiles.capped.budget (4e-6 USD a day, 2.5e-6 a request) counts the spend of both replicas."""
    import openai
    (a, b), keys, _ = pair
    a_client, b_client = (openai.OpenAI(base_url=f"{g.url}/v1", api_key=keys["plain"], max_retries=0, timeout=10)
                          for g in (a, b))
    assert a_client.chat.completions.create(model="capped", messages=MSG).choices[0].message.content
    refusals = []

    def b_refuses() -> bool:
        try:
            b_client.chat.completions.create(model="capped", messages=MSG)
            return False
        except openai.RateLimitError as exc:
            refusals.append(exc)
            return True
    assert wait_for(b_refuses, timeout=10, step=0.2)
    with pytest.raises(openai.RateLimitError) as refused_on_a:
        a_client.chat.completions.create(model="capped", messages=MSG)
    for exc in (refusals[0], refused_on_a.value):
        assert exc.code == "insufficient_quota" and "profile capped" in exc.message
    # the key itself has no budget: the same key still gets answers through another profile's experts
    assert a_client.chat.completions.create(model="good", messages=MSG).choices


def test_circuit_opened_on_one_replica_is_open_on_the_other(pair, experts):
    (a, b), keys, _ = pair
    set_behaviour(experts["switch"], "error")
    try:
        for _ in range(2):
            r = chat(a, keys["admin"])
            assert r.status_code == 200 and r.headers["x-router-expert"] == "good"
        admin = {"authorization": f"Bearer {keys['admin']}"}

        def b_avoids_switch() -> bool:
            route = httpx.post(f"{b.url}/v1/route", json={"model": "auto", "messages": MSG}, headers=admin).json()
            return route["chosen"] == "good" and route["ineligible"].get("switch", "").startswith("circuit open")
        assert wait_for(b_avoids_switch, 3), "replica b never saw the circuit opened on a"
        before = httpx.get(f"{experts['switch'].url}/_stats").json()["count"]
        assert chat(b, keys["admin"]).headers["x-router-expert"] == "good"
        assert httpx.get(f"{experts['switch'].url}/_stats").json()["count"] == before  # not even tried
    finally:
        set_behaviour(experts["switch"], "ok")


def test_redis_down_mid_run_then_back(pair):
    (a, b), keys, redis = pair
    admin = {"authorization": f"Bearer {keys['admin']}"}
    assert httpx.get(f"{a.url}/ready").json()["shared_state"]["connected"] is True
    redis.stop()
    try:
        r = chat(a, keys["admin"])
        assert r.status_code == 200  # served on local state
        assert wait_for(lambda: httpx.get(f"{a.url}/ready").json()["shared_state"]["connected"] is False, 5)
        ready = httpx.get(f"{a.url}/ready", headers=admin)  # the details are for admin callers
        assert ready.status_code == 200 and "degraded" in ready.json()["shared_state"]
        assert wait_for(lambda: "Redis unavailable" in a.log_text(), 5)
    finally:
        restarted = start_redis(redis.port)
        redis.proc = restarted.proc
    for g in (a, b):
        assert wait_for(lambda: httpx.get(f"{g.url}/ready").json()["shared_state"]["connected"] is True, 10)
        assert wait_for(lambda: "shared state resynchronised" in g.log_text(), 5)
    assert httpx.get(f"{a.url}/admin/state", headers=admin).json()["shared_state"]["connected"] is True


async def test_bandit_stats_are_shared_and_survive_an_outage(redis_server):
    from router_gateway.state.expert_state import ExpertState
    from router_gateway.state.shared_state import SharedState
    one = SharedState(redis_server.url_redis, ExpertState(), prefix="rg-test-bandit:")
    two = SharedState(redis_server.url_redis, ExpertState(), prefix="rg-test-bandit:")
    await one.start()
    await two.start()
    try:
        await one.add_stats("linucb", {"A": np.eye(2), "b": np.array([1.0, 0.0])})
        await two.add_stats("linucb", {"A": np.eye(2), "b": np.array([0.0, 2.0])})
        for s in (one, two):
            stats = await s.get_stats("linucb")
            np.testing.assert_allclose(stats["A"], 2 * np.eye(2))
            np.testing.assert_allclose(stats["b"], [1.0, 2.0])
        one.mark_down(ConnectionError("test"))
        await one.add_stats("linucb", {"b": np.array([1.0, 1.0])})  # kept locally
        np.testing.assert_allclose((await one.get_stats("linucb"))["b"], [2.0, 3.0])
        await one._try_reconnect()
        np.testing.assert_allclose((await two.get_stats("linucb"))["b"], [2.0, 3.0])
    finally:
        await one.close()
        await two.close()
