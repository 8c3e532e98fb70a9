"""API keys, scopes, allow-lists, per-key rate limits and budgets, saturation: in process (TestClient,
fake expert behind the in-memory connection, hashing embedder), so each case costs milliseconds."""
from __future__ import annotations

import logging
import sqlite3

import pytest

from router_gateway.cli import main as cli
from router_gateway.state.keys import KeyStore, hash_secret
from tests.support.fakes import fake_connect
from tests.support.keyed_app import keyed_gateways

MSG = [{"role": "user", "content": "hello there"}]
CONFIG = """
experts:
  cheap: {base_url: http://fake/v1, model: ok-cheap, price: {input_per_mtok: 1, output_per_mtok: 2}, prior_quality: 0.4}
  strong: {base_url: http://fake/v1, model: ok-strong, price: {input_per_mtok: 3, output_per_mtok: 6}, prior_quality: 0.9, max_concurrency: 2}
routers: {s: {type: strongest}}
profiles: {auto: {router: s, cost_weight: 0}, other: {router: s}}
logging: {path: LOG, flush_interval_ms: 20}
"""


@pytest.fixture
def env(tmp_path):
    """(client factory, key store): the app is built on demand so a test can create keys first."""
    with keyed_gateways(tmp_path, CONFIG, fake_connect) as pair:
        yield pair


def chat(client, key=None, header="authorization", **body):
    headers = {}
    if key:
        headers[header] = f"Bearer {key}" if header == "authorization" else key
    return client.post("/v1/chat/completions", json={"model": "auto", "messages": MSG, **body}, headers=headers)


def assert_error(response, status, type_, code=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == type_
    if code:
        assert error["code"] == code


def test_no_keys_means_open_and_admin_from_loopback(env):
    make, _ = env
    client = make()
    assert chat(client).status_code == 200
    assert client.get("/admin/state").status_code == 200  # the test client counts as loopback


def test_keys_required_when_configured_and_never_echoed(env, caplog):
    make, store = env
    user, user_rec = store.create("alice")
    admin, _ = store.create("ops", ("admin",))
    client = make()
    caplog.set_level(logging.DEBUG)
    assert_error(client.get("/v1/models"), 401, "authentication_error", "invalid_api_key")
    assert_error(chat(client), 401, "authentication_error")
    forged = "rg-" + "A" * 43
    bad = chat(client, forged)
    assert_error(bad, 401, "authentication_error")
    assert forged not in bad.text
    assert chat(client, user).status_code == 200
    assert chat(client, user, header="x-api-key").status_code == 200
    assert client.post("/v1/route", json={"model": "auto", "messages": MSG},
                       headers={"authorization": f"Bearer {user}"}).status_code == 200
    # admin endpoints: admin scope needed, even from loopback
    assert_error(client.get("/admin/state"), 401, "authentication_error")
    assert_error(client.get("/admin/state", headers={"authorization": f"Bearer {user}"}), 403, "permission_error")
    assert client.get("/admin/state", headers={"authorization": f"Bearer {admin}"}).status_code == 200
    # health and readiness stay open for probes
    assert client.get("/health").status_code == 200
    # the record names the key by id; the secret is nowhere: not in the log db, not in the logs
    gateway = client.app.state.gateway
    client.portal.call(gateway.request_log.flush)
    db = sqlite3.connect(gateway.request_log.path)
    rows = [r[0] for r in db.execute("SELECT data FROM requests")]
    assert any(f'"key_id":"{user_rec.id}"' in r for r in rows)
    assert not any(user in r or admin in r for r in rows)
    assert user not in caplog.text and admin not in caplog.text
    assert user not in store.path.read_text() and hash_secret(user) in store.path.read_text()


def test_revoked_key_is_refused(env):
    make, store = env
    secret, record = store.create("bob")
    client = make()
    assert chat(client, secret).status_code == 200
    assert store.revoke(record.id)
    client.app.state.gateway.keys.refresh(force=True)
    assert_error(chat(client, secret), 401, "authentication_error")


def test_allowed_profiles_and_experts(env):
    make, store = env
    secret, _ = store.create("carol", allowed_experts=("cheap",), allowed_profiles=("auto",))
    client = make()
    ok = chat(client, secret)
    assert ok.status_code == 200 and ok.headers["x-router-expert"] == "cheap"  # strong is masked
    assert_error(chat(client, secret, model="other"), 403, "permission_error")
    assert_error(chat(client, secret, model="strong"), 403, "permission_error")
    assert chat(client, secret, model="cheap").status_code == 200


def test_requests_per_minute(env):
    make, store = env
    secret, _ = store.create("dave", rpm=3)
    client = make()
    statuses = [chat(client, secret).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    limited = chat(client, secret)
    assert_error(limited, 429, "rate_limit_error", "rate_limit_exceeded")
    assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_tokens_per_minute(env):
    make, store = env
    secret, _ = store.create("erin", tpm=20)  # the fake expert reports 15 tokens a request
    client = make()
    assert chat(client, secret).status_code == 200
    assert chat(client, secret, stream=True).status_code == 200  # streams count too (usage asked for)
    assert_error(chat(client, secret), 429, "rate_limit_error")


def test_daily_budget_from_logged_cost_survives_restart(env):
    make, store = env
    # cheap costs (10 * 1 + 5 * 2) / 1e6 = 2e-5 USD a request
    secret, _ = store.create("frank", budget_usd_day=3e-5, allowed_experts=("cheap",))
    client = make()
    assert chat(client, secret).status_code == 200
    assert chat(client, secret).status_code == 200
    spent = chat(client, secret)
    assert_error(spent, 429, "insufficient_quota", "insufficient_quota")
    assert int(spent.headers["retry-after"]) >= 1
    client.__exit__(None, None, None)  # restart: the day's spend is read back from the request log
    assert_error(chat(make(), secret), 429, "insufficient_quota")


def test_monthly_budget(env):
    make, store = env
    secret, _ = store.create("gina", budget_usd_month=1e-5, allowed_experts=("cheap",))
    client = make()
    assert chat(client, secret).status_code == 200
    assert_error(chat(client, secret), 429, "insufficient_quota")


def test_every_eligible_expert_saturated_is_429_with_retry_after(env):
    make, _ = env
    client = make()
    state = client.app.state.gateway.state
    for _ in range(2):
        state.acquire("strong")
    only_strong = chat(client)
    assert only_strong.headers["x-router-expert"] == "cheap"  # saturated strong is skipped
    for _ in range(64):
        state.acquire("cheap")
    busy = chat(client)
    assert_error(busy, 429, "rate_limit_error", "experts_saturated")
    assert busy.headers["retry-after"] == "1"


def test_keys_cli(tmp_path, capsys):
    path = tmp_path / "k" / "keys.json"
    assert cli(["keys", "--file", str(path), "create", "--name", "ci", "--scope", "admin", "--rpm", "5",
                "--budget-day", "1.5", "--experts", "a,b"]) == 0
    out = capsys.readouterr().out
    secret = out.split("secret (shown once, store it now): ")[1].strip()
    assert secret.startswith("rg-") and len(secret) > 40
    assert secret not in path.read_text() and oct(path.stat().st_mode)[-3:] == "600"
    key = KeyStore(path).verify(secret)
    assert key.is_admin and key.rpm == 5 and key.budget_usd_day == 1.5 and key.allowed_experts == ("a", "b")
    assert cli(["keys", "--file", str(path), "list"]) == 0
    listing = capsys.readouterr().out
    assert key.id in listing and "active" in listing and secret not in listing
    assert cli(["keys", "--file", str(path), "revoke", key.id]) == 0
    assert KeyStore(path).verify(secret) is None
    assert cli(["keys", "--file", str(path), "revoke", key.id]) == 1


def test_serve_refuses_public_bind_without_keys(tmp_path, monkeypatch):
    config = tmp_path / "experts.yaml"
    config.write_text(CONFIG.replace("LOG", str(tmp_path / "log.db")))
    monkeypatch.delenv("ROUTER_GATEWAY_KEYS", raising=False)
    assert cli(["serve", "--config", str(config), "--host", "0.0.0.0"]) == 1
