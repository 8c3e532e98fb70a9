"""Issue 14, security: keys fail closed, allow-lists bind named experts (and fallbacks), limits are
validated (0 suspends a key), upstream usage cannot credit a key, feedback is bound to the key that
made the request, and /ready shows details to admin callers only. In process (TestClient, fake
transport, hashing embedder), so each case costs milliseconds."""
from __future__ import annotations

import logging
import shutil

import httpx
import orjson
import pytest

from router_gateway.cli import main as cli
from router_gateway.http.memory import InMemoryConnector
from tests.support.fakes import fake_handler
from tests.support.keyed_app import keyed_gateways

MSG = [{"role": "user", "content": "hello there"}]
CONFIG = """
experts:
  cheap: {base_url: http://fake/v1, model: ok-cheap, price: {input_per_mtok: 1, output_per_mtok: 2}, prior_quality: 0.4}
  strong: {base_url: http://fake/v1, model: ok-strong, price: {input_per_mtok: 3, output_per_mtok: 6}, prior_quality: 0.9}
  flaky: {base_url: http://fake/v1, model: down-flaky, price: {input_per_mtok: 1, output_per_mtok: 1}, fallbacks: [strong]}
  liar: {base_url: http://fake/v1, model: liar, price: {input_per_mtok: 1, output_per_mtok: 2}, context_window: 4096}
routers: {s: {type: strongest}}
profiles:
  small: {router: s, experts: [cheap, flaky], max_messages: 2, max_tokens: 50}
  big: {router: s, experts: [strong]}
  lying: {router: s, experts: [liar]}
logging: {path: LOG, flush_interval_ms: 20}
"""
LIAR_USAGE: dict = {}  # what the 'liar' expert reports as usage (a test sets it)


def connect() -> InMemoryConnector:
    """fake_handler, plus an expert ('liar') whose reported usage the test chooses."""
    inner = fake_handler()

    async def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content) if request.method == "POST" else {}
        if body.get("model") == "liar" and body.get("stream"):
            events = [{"model": "liar", "choices": [{"index": 0, "delta": {"content": "hi"}}]},
                      {"model": "liar", "choices": [], "usage": LIAR_USAGE}]
            data = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
            return httpx.Response(200, stream=httpx.ByteStream(data), headers={"content-type": "text/event-stream"})
        if body.get("model") == "liar":
            return httpx.Response(200, json={"id": "x", "object": "chat.completion", "model": "liar",
                                             "choices": [{"index": 0, "message": {"role": "assistant",
                                                                                  "content": "hi"}}],
                                             "usage": LIAR_USAGE})
        return await inner(request)
    return InMemoryConnector(handler)


@pytest.fixture
def env(tmp_path):
    """(client factory, key store): the app is built on demand so a test can create keys first."""
    with keyed_gateways(tmp_path, CONFIG, connect) as pair:
        yield pair


def bearer(secret: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"} if secret else {}


def chat(client, key=None, model="small", messages=MSG, **body):
    return client.post("/v1/chat/completions", json={"model": model, "messages": messages, **body},
                       headers=bearer(key))


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error


def mark_experts_up(client) -> None:
    """As a health check would (these tests run none), so /ready turns on the keys alone."""
    gateway = client.app.state.gateway
    for name in gateway.runtime.config.experts:
        gateway.state.set_health(name, None)


def reread(client) -> None:
    client.app.state.gateway.keys.refresh(force=True)  # the gateway re-reads at most once a second


# -- defect 1: a keys file that goes missing, empty or unreadable fails closed --------------------

def _remove(path):
    path.unlink()


def _empty(path):
    path.write_text('{"keys": []}')


def _garbage(path):
    path.write_text('{"keys": [')


def _unreadable(path):
    path.unlink()
    path.mkdir()  # reading a directory fails like an unreadable file (chmod does not stop root)


@pytest.mark.parametrize("break_file", [_remove, _empty, _garbage, _unreadable])
def test_keys_file_lost_while_serving_fails_closed(env, break_file, caplog):
    make, store = env
    user, _ = store.create("alice")
    client = make()
    mark_experts_up(client)
    assert chat(client, user).status_code == 200 and client.get("/ready").status_code == 200
    good = store.path.read_bytes()
    caplog.set_level(logging.ERROR, logger="router_gateway.state.keys")
    break_file(store.path)
    reread(client)
    for response in (chat(client), chat(client, user), client.get("/v1/models"), client.get("/admin/state"),
                     client.post("/admin/reload"), client.get("/metrics"), client.get("/ui/data")):
        assert_error(response, 503, "keys_unavailable")
        assert str(store.path) not in response.text  # where the file lives is for the log only
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json()["ready"] is False and ready.json()["keys_ok"] is False
    assert "API keys unavailable" in caplog.text and str(store.path) in caplog.text
    # the operator restores the file: the same keys work again, without a restart
    if store.path.is_dir():
        shutil.rmtree(store.path)
    store.path.write_bytes(good)
    reread(client)
    assert chat(client, user).status_code == 200
    assert_error(chat(client), 401, "invalid_api_key")
    assert client.get("/ready").status_code == 200


def test_existing_but_empty_keys_file_at_start_fails_closed(env):
    make, store = env
    store.path.write_text('{"keys": []}')
    client = make()
    assert_error(chat(client), 503, "keys_unavailable")
    assert client.get("/ready").json()["keys_ok"] is False


def test_no_keys_file_at_start_is_the_way_to_run_without_keys(env):
    make, store = env
    client = make()
    assert chat(client).status_code == 200  # documented: loopback-only, `serve` refuses a public bind
    store.create("first")  # keys created while serving turn access control on, for good
    reread(client)
    assert_error(chat(client), 401, "invalid_api_key")
    store.path.unlink()
    reread(client)
    assert_error(chat(client), 503, "keys_unavailable")


def test_keys_file_with_an_invalid_limit_fails_closed(env):
    make, store = env
    user, record = store.create("alice")
    client = make()
    data = orjson.loads(store.path.read_bytes())
    data["keys"][0]["rpm"] = -1  # a hand edit the limiter cannot enforce
    store.path.write_bytes(orjson.dumps(data))
    reread(client)
    assert_error(chat(client, user), 503, "keys_unavailable")
    assert record.id in client.app.state.gateway.keys.problem and "rpm" in client.app.state.gateway.keys.problem


# -- defect 2: a key restricted to profiles cannot escape them by naming an expert ---------------

def test_profile_restricted_key_reaches_only_its_profiles_experts_within_their_limits(env):
    make, store = env
    secret, _ = store.create("small-only", allowed_profiles=("small",))
    client = make()
    assert chat(client, secret).status_code == 200
    assert_error(chat(client, secret, model="big"), 403, "permission_denied")
    assert_error(chat(client, secret, model="strong"), 403, "permission_denied")  # not in 'small'
    route = client.post("/v1/route", json={"model": "strong", "messages": MSG}, headers=bearer(secret))
    assert_error(route, 403, "permission_denied")
    named = chat(client, secret, model="cheap")
    assert named.status_code == 200 and named.headers["x-router-expert"] == "cheap"
    # the profile's limits bind the named expert too
    assert_error(chat(client, secret, model="cheap", messages=MSG * 3), 400, "invalid_request")
    assert_error(chat(client, secret, model="cheap", max_tokens=51), 400, "invalid_request")
    assert chat(client, secret, model="cheap", max_tokens=50).status_code == 200


def test_named_expert_fallbacks_stay_within_the_keys_reach(env):
    make, store = env
    by_expert, _ = store.create("flaky-only", allowed_experts=("flaky",))
    by_profile, _ = store.create("small-only", allowed_profiles=("small",))
    anyone, _ = store.create("anyone")
    client = make()
    # flaky is down and falls back to strong: a key that may not reach strong must not get it that way
    assert chat(client, anyone, model="flaky").headers["x-router-expert"] == "strong"
    for secret in (by_expert, by_profile):
        refused = chat(client, secret, model="flaky")
        assert refused.status_code == 502 and "x-router-expert" not in refused.headers, refused.text


def test_models_lists_only_what_the_key_may_use(env):
    make, store = env
    secret, _ = store.create("small-only", allowed_profiles=("small",))
    client = make()
    ids = {m["id"] for m in client.get("/v1/models", headers=bearer(secret)).json()["data"]}
    assert ids == {"small", "cheap", "flaky"}


# -- defect 3: limits of 0 or below --------------------------------------------------------------

@pytest.mark.parametrize("flag,value", [("--rpm", "-1"), ("--tpm", "-5"), ("--budget-day", "-0.5"),
                                        ("--budget-month", "nan"), ("--budget-day", "inf")])
def test_keys_create_refuses_limits_it_cannot_enforce(tmp_path, capsys, flag, value):
    path = tmp_path / "keys.json"
    assert cli(["keys", "--file", str(path), "create", "--name", "x", flag, value]) == 2
    err = capsys.readouterr().err
    assert "keys:" in err and "Traceback" not in err
    assert not path.exists()  # nothing was written


@pytest.mark.parametrize("limit", ["rpm", "tpm", "budget_usd_day", "budget_usd_month"])
def test_a_limit_of_zero_suspends_the_key(env, limit):
    make, store = env
    secret, record = store.create("paused", **{limit: 0})
    client = make()
    for _ in range(2):
        refused = chat(client, secret)
        assert_error(refused, 403, "key_suspended")
        assert record.id in refused.json()["error"]["message"] and limit in refused.json()["error"]["message"]


# -- weak spots: upstream usage, feedback, /ready ------------------------------------------------

@pytest.mark.parametrize("usage,billed_prompt,billed_completion", [
    ({"prompt_tokens": -1_000_000_000_000, "completion_tokens": 5}, 0, 5),
    ({"prompt_tokens": 10, "completion_tokens": -7}, 10, 0),
    ({"prompt_tokens": 10**15, "completion_tokens": 10**15}, 4096, 4096),
])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_usage_is_clamped_and_logged(env, caplog, usage, billed_prompt, billed_completion, stream):
    make, store = env
    secret, record = store.create("b", budget_usd_day=1.0, tpm=10**9, allowed_profiles=("lying",))
    client = make()
    LIAR_USAGE.clear()
    LIAR_USAGE.update(usage)
    caplog.set_level(logging.WARNING, logger="router_gateway.usage")
    response = chat(client, secret, model="lying", stream=stream)
    assert response.status_code == 200
    expected = (billed_prompt * 1 + billed_completion * 2) / 1e6
    gateway = client.app.state.gateway
    client.portal.call(gateway.request_log.flush)
    logged = client.portal.call(gateway.request_log.get, response.headers["x-request-id"])
    assert logged["cost_usd"] == pytest.approx(expected)
    if not stream:  # a stream's cost is known only at its end: in the log, not in a header
        assert float(response.headers["x-router-cost-usd"]) == pytest.approx(expected)
    assert "clamped" in caplog.text and "liar" in caplog.text
    day_spend, _ = gateway.limiter.spent(record.id)
    assert day_spend == pytest.approx(expected) and day_spend >= 0  # never a credit
    assert sum(t for _, t in gateway.limiter._tokens[record.id]) == billed_prompt + billed_completion


def test_feedback_only_on_the_keys_own_requests(env):
    make, store = env
    alice, _ = store.create("alice")
    mallory, _ = store.create("mallory")
    admin, _ = store.create("ops", ("admin",))
    client = make()
    rid = chat(client, alice).headers["x-request-id"]

    def feedback(secret):
        return client.post("/v1/feedback", json={"request_id": rid, "score": 0.1}, headers=bearer(secret))
    assert_error(feedback(mallory), 404, "not_found")  # the same answer as an unknown id
    assert feedback(alice).status_code == 200
    assert feedback(admin).status_code == 200


def test_ready_shows_details_to_admin_callers_only(env):
    make, store = env
    user, _ = store.create("alice")
    admin, _ = store.create("ops", ("admin",))
    client = make()
    gateway = client.app.state.gateway
    client.portal.call(gateway.reload)  # fails (no config file): the error names what it tried
    for headers in ({}, bearer(user), bearer("rg-forged")):
        public = client.get("/ready", headers=headers).json()
        assert set(public) == {"ready", "config", "embedder", "experts_reachable", "keys_ok", "reload_ok"}, public
        assert all(isinstance(v, bool) for v in public.values())
        assert public["reload_ok"] is False
    detailed = client.get("/ready", headers=bearer(admin)).json()
    assert "last_reload_error" in detailed and "config_version" in detailed
    assert detailed["keys"] == {"required": True, "ok": True}
