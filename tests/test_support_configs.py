"""The tests' experts.yaml builder (tests/support/configs.py) writes what it is given, and only that."""
from __future__ import annotations

from router_gateway.domain.config import load_config, parse_config
from tests.support.configs import (
    AUTO_PROFILES,
    ONE_THREAD_EMBEDDER,
    STRONG_AND_CHEAP,
    config_text,
    expert,
    fake_experts,
    ranked_experts,
    served_experts,
    write_config,
)


def test_sections_left_out_keep_the_gateways_defaults_and_extra_text_is_appended():
    text = config_text({"a": expert("http://x/v1", "m", 1, 2)}, extra="server: {max_attempts: 2}")
    bare = parse_config(text)
    assert bare.experts["a"].price.output_per_mtok == 2 and bare.experts["a"].model == "m"
    assert set(bare.routers) == {"default"} and set(bare.profiles) == {"auto"}
    assert bare.logging.flush_interval_ms == 200 and bare.logging.path == "var/requests.db"
    assert bare.server.max_attempts == 2 and text.endswith("server: {max_attempts: 2}\n")


def test_every_section_given_is_written(tmp_path):
    text = config_text(fake_experts({"okdear": {"caps": ["tools"], "ctx": 64}, "okcheap": {"price": 0.1, "q": 0.3}}),
                       routers={"s": {"type": "strongest"}},
                       profiles={"auto": "{router: s, cost_weight: 0}", "other": {"router": "s"}},
                       log_path=tmp_path / "log.db", flush_interval_ms=20, embedder=ONE_THREAD_EMBEDDER,
                       server={"max_attempts": 2})
    config = parse_config(text)
    assert list(config.experts) == ["okdear", "okcheap"]  # order kept: some tests rank by position
    assert config.experts["okcheap"].prior_quality == 0.3 and config.experts["okcheap"].price.input_per_mtok == 0.1
    assert config.experts["okdear"].capabilities == ("tools",) and config.experts["okdear"].context_window == 64
    assert config.profiles["auto"].cost_weight == 0 and config.profiles["other"].router == "s"
    assert config.logging.path == str(tmp_path / "log.db") and config.logging.flush_interval_ms == 20
    assert config.embedder.threads == 1 and config.server.max_attempts == 2


def test_write_config_logs_next_to_the_file_and_ranks_by_position(tmp_path):
    path = write_config(tmp_path / "experts.yaml", ranked_experts({"a": "http://h:1", "b": "http://h:2"}, 60),
                        routers=STRONG_AND_CHEAP, profiles=AUTO_PROFILES)
    config = load_config(path)
    assert config.logging.path == str(tmp_path / "requests.db") and config.logging.flush_interval_ms == 50
    a, b = config.experts["a"], config.experts["b"]
    assert (a.base_url, a.model, b.base_url) == ("http://h:1/v1", "a-served", "http://h:2/v1")
    assert a.price.input_per_mtok < b.price.input_per_mtok and a.prior_quality < b.prior_quality
    assert a.timeout.first_byte == 60 and a.timeout.total == 60
    served = parse_config(config_text(served_experts({"s": {"url": "http://h:3", "price": 0.3, "max_concurrency": 2}})))
    assert served.experts["s"].price.output_per_mtok == 0.6 and served.experts["s"].max_concurrency == 2
