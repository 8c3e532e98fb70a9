"""Registering experts without a restart: file watch and /admin/reload; bad files keep the old config."""
from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.configs import AUTO_PROFILES, ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, ranked_experts, write_config
from tests.support.polling import wait_for
from tests.support.servers import start_gateway

MSG = [{"role": "user", "content": "hi"}]


def _experts(gateway_url: str) -> set[str]:
    return {m["id"] for m in httpx.get(f"{gateway_url}/v1/models").json()["data"] if m["kind"] == "expert"}


def _write(path, urls: dict[str, str]):
    """The config the reload tests write, and rewrite with other experts (name -> fake expert URL)."""
    return write_config(path, ranked_experts(urls), routers=STRONG_AND_CHEAP, profiles=AUTO_PROFILES,
                        embedder=ONE_THREAD_EMBEDDER)


@pytest.fixture
def reloadable(fake_experts, tmp_path):
    config = _write(tmp_path / "experts.yaml", {"good": fake_experts["good"].url})
    server = start_gateway(config, tmp_path)
    server.config_path = config
    yield server, fake_experts
    server.stop()


def test_new_expert_by_file_watch_then_bad_file_keeps_old_config(reloadable):
    gateway, fakes = reloadable
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0)
    assert _experts(gateway.url) == {"good"}
    _write(gateway.config_path, {"good": fakes["good"].url, "good2": fakes["good2"].url})
    assert wait_for(lambda: _experts(gateway.url) == {"good", "good2"}), "file watch did not reload"
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=MSG)
    assert raw.headers["x-router-expert"] == "good2"  # the new, stronger expert is eligible at once

    gateway.config_path.write_text(gateway.config_path.read_text() + "\nbogus_section: 1\n")
    refused = httpx.post(f"{gateway.url}/admin/reload")
    assert refused.status_code == 400 and "bogus_section" in refused.json()["error"]["message"]
    ready = httpx.get(f"{gateway.url}/ready").json()
    assert "bogus_section" in ready.get("last_reload_error", "")
    assert client.chat.completions.create(model="auto", messages=MSG).model == "good2"  # old config serves
    assert "config reload refused" in gateway.log_text()


def test_removed_expert_stops_receiving_but_its_stream_finishes(reloadable):
    gateway, fakes = reloadable
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0)
    _write(gateway.config_path, {"good": fakes["good"].url, "good2": fakes["good2"].url})
    assert wait_for(lambda: _experts(gateway.url) == {"good", "good2"})
    stream = client.chat.completions.create(model="good2", messages=MSG, stream=True)
    first = next(iter(stream))
    _write(gateway.config_path, {"good": fakes["good"].url})
    ok = httpx.post(f"{gateway.url}/admin/reload")
    assert ok.status_code == 200
    rest = list(stream)  # the stream that started on the old version completes
    assert first.model == "good2" and rest[-1].choices[0].finish_reason == "stop"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="good2", messages=MSG)
    assert client.chat.completions.create(model="auto", messages=MSG).model == "good"
