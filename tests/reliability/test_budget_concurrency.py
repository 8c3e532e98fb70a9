"""Issue 14 defect 9: budgets (and TPM, its sibling) hold under concurrency. A burst of a key's
requests all in flight at once must not overspend by the burst: each admitted request holds its
expected cost until it ends, so the overspend is at most one request's estimate. Real gateway
processes in front of a real (slow) fake expert: one replica on local state, two sharing a real Redis."""
from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from router_gateway.domain.config import load_config
from router_gateway.domain.protocol import ChatRequest
from router_gateway.state.holds import expected_hold
from router_gateway.state.keys import KeyStore
from tests.support.configs import ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, served_experts, write_config
from tests.support.polling import wait_for
from tests.support.request_log import logged_ids
from tests.support.servers import start_fake_expert, start_gateway, wait_gateway
from tests.support.usage import settled_spend

pytestmark = [pytest.mark.redis, pytest.mark.slow]
BODY = orjson.dumps({"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
COST = 1e-5  # what the expert reports: 11 prompt tokens at 0.4 USD/Mtok + 7 completion tokens at 0.8
TOKENS = 18
BURST = 40


@pytest.fixture(scope="module")
def replicas(redis_server, tmp_path_factory):
    """(local replica, [two Redis replicas], key store, the hold one request takes)."""
    tmp = tmp_path_factory.mktemp("budget")
    expert = start_fake_expert("slow", "paid", 2.0)  # every request of a burst is in flight together
    store = KeyStore(tmp / "keys.json")
    store.create("ops", ("admin",))
    spec = {"paid": {"url": expert.url, "price": 0.4, "first_byte": 30, "max_concurrency": 512}}
    profiles = {"auto": "{router: strong, cost_weight: 0}"}
    servers = {}
    for name, redis in (("local", None), ("a", redis_server.url_redis), ("b", redis_server.url_redis)):
        (tmp / name).mkdir()
        config = write_config(tmp / name / "experts.yaml", served_experts(spec), profiles=profiles,
                              routers=STRONG_AND_CHEAP, embedder=ONE_THREAD_EMBEDDER, server={"health_interval_s": 30})
        env = {"ROUTER_GATEWAY_KEYS": str(store.path), **({"REDIS_URL": redis} if redis else {})}
        servers[name] = start_gateway(config, tmp / name, env=env, wait=False)
        servers[name].db_path, servers[name].redis_url = tmp / name / "requests.db", redis
    try:
        for server in servers.values():
            wait_gateway(server)
        config = load_config(tmp / "local" / "experts.yaml")
        hold = expected_hold("k", ChatRequest.model_validate(orjson.loads(BODY)), len(BODY), config, None)
        yield servers["local"], [servers["a"], servers["b"]], store, hold
    finally:
        for server in servers.values():
            server.stop()
        expert.stop()


async def burst(urls: list[str], secret: str, n: int = BURST) -> list[httpx.Response]:
    headers = {"authorization": f"Bearer {secret}", "content-type": "application/json"}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.post(f"{urls[i % len(urls)]}/v1/chat/completions", content=BODY,
                                                  headers=headers) for i in range(n)))


def spend_of(responses: list[httpx.Response]) -> float:
    return sum(float(r.headers["x-router-cost-usd"]) for r in responses if r.status_code == 200)


def new_key(store: KeyStore, urls: list[str], **limits) -> tuple[str, str]:
    """(secret, key id) of a new key every replica at ``urls`` knows."""
    secret, record = store.create("burst", **limits)
    # the replicas re-read the keys file at most once a second: wait until they all know the key
    probe = {"authorization": f"Bearer {secret}"}
    assert wait_for(lambda: all(httpx.get(f"{u}/v1/models", headers=probe).status_code == 200 for u in urls), 10)
    return secret, record.id


def check_budget_bursts(urls: list[str], store: KeyStore, hold, settled) -> None:
    """``settled(key_id, responses)``: whether the usage of a burst's answers has replaced their holds."""
    budget = 1e-4  # ten requests' worth
    assert hold.usd >= COST  # the estimate errs high, which is what bounds the overspend
    secret, key_id = new_key(store, urls, budget_usd_day=budget)
    first = asyncio.run(burst(urls, secret))
    answered = [r for r in first if r.status_code == 200]
    assert answered, [r.text for r in first[:3]]
    assert all(r.status_code == 429 for r in first if r.status_code != 200), {r.status_code for r in first}
    assert spend_of(first) <= budget + hold.usd, (len(answered), spend_of(first))
    # later bursts use what the first one's holds gave back, and never more than one request past it
    total = spend_of(first)
    more = first
    for _ in range(5):
        assert wait_for(lambda: settled(key_id, more), 10)  # the burst's usage is settled just after its answers
        more = asyncio.run(burst(urls, secret))
        total += spend_of(more)
        if not any(r.status_code == 200 for r in more):
            break
    assert budget - COST < total <= budget + hold.usd, total
    spent = [r for r in more if r.status_code == 429]
    assert spent and spent[0].json()["error"]["code"] == "insufficient_quota"


def test_budget_holds_under_a_burst_on_one_replica(replicas):
    local, _, store, hold = replicas
    # one replica settles a request's usage before it logs it: a logged answer is a settled one
    check_budget_bursts([local.url], store, hold, lambda _, responses: {
        r.headers["x-request-id"] for r in responses if r.status_code == 200} <= logged_ids(local.db_path))


def test_budget_holds_under_a_burst_across_two_replicas_on_redis(replicas):
    _, pair, store, hold = replicas
    redis_url = pair[0].redis_url
    check_budget_bursts([g.url for g in pair], store, hold,
                        lambda key_id, _: settled_spend(redis_url, key_id) is not None)


@pytest.mark.parametrize("where", ["local", "redis"])
def test_tokens_per_minute_hold_under_a_burst(replicas, where):
    local, pair, store, hold = replicas
    urls = [local.url] if where == "local" else [g.url for g in pair]
    tpm = 10 * TOKENS
    secret, _ = new_key(store, urls, tpm=tpm)
    responses = asyncio.run(burst(urls, secret))
    answered = sum(r.status_code == 200 for r in responses)
    assert answered >= 1 and answered * TOKENS <= tpm + hold.tokens, answered
