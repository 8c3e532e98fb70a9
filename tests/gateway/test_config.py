"""experts.yaml validation: good files load; hostile ones are refused with a message, never a traceback."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from router_gateway.domain.config import load_config, parse_config
from router_gateway.domain.config_yaml import ConfigError

GOOD = """
experts:
  small:
    base_url: http://127.0.0.1:1/v1
    model: small
    price: {input_per_mtok: 0.1, output_per_mtok: 0.2}
    api_key: ${SMALL_KEY}
  big:
    base_url: http://127.0.0.1:2/v1
    model: big
    price: {input_per_mtok: 1, output_per_mtok: 2}
    fallbacks: [small]
routers:
  default: {type: strongest}
profiles:
  auto: {router: default, cost_weight: 0.5}
"""


def test_good_config_resolves_env_and_defaults():
    config = parse_config(GOOD, env={"SMALL_KEY": "sk-secret"})
    assert config.experts["small"].api_key == "sk-secret"
    assert config.experts["big"].fallbacks == ("small",)
    assert config.profiles["auto"].cost_weight == 0.5
    assert "sk-secret" not in repr(config.experts["small"])


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace("model: small\n", "model: small\n    colour: red\n"), "experts.small.colour: unknown key"),
    (GOOD.replace("input_per_mtok: 0.1", "input_per_mtok: cheap"), "experts.small.price.input_per_mtok"),
    (GOOD.replace("input_per_mtok: 0.1", "input_per_mtok: -1"), "greater than or equal to 0"),
    (GOOD.replace("fallbacks: [small]", "fallbacks: [tiny]"), "unknown expert 'tiny'"),
    (GOOD.replace("{router: default", "{router: missing"), "unknown router 'missing'"),
    (GOOD.replace("http://127.0.0.1:2/v1", "ftp://x"), "must start with http"),
    (GOOD.replace("  big:\n", "  small:\n    model: x\n  big:\n"), "duplicate key 'small'"),
    (GOOD + "  small: {router: default}\n", "both as expert and profile"),
    ("experts:\n  a: &x {base_url: http://x, model: m, price: {input_per_mtok: 1, output_per_mtok: 1}}\n  b: *x\n",
     "aliases"),
    ("a: &a [1,1,1]\nb: &b [*a,*a,*a]\nc: [*b,*b,*b]\n", "aliases"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("experts: {a: [unclosed\n", "not valid YAML"),
    ("experts: {}\n", "at least one expert"),
])
def test_hostile_configs_are_refused_with_a_message(text, expected):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml", env={"SMALL_KEY": "k"})
    assert expected in str(info.value)


def test_unset_env_var_names_variable_and_line():
    with pytest.raises(ConfigError) as info:
        parse_config(GOOD, "f.yaml", env={})
    assert "SMALL_KEY is not set" in str(info.value)
    assert "f.yaml:7" in str(info.value)


def test_unknown_key_error_names_line():
    text = GOOD.replace("model: big\n", "model: big\n    colour: red\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml", env={"SMALL_KEY": "k"})
    assert "f.yaml:11: experts.big.colour: unknown key" in str(info.value)


def test_oversized_and_binary_files(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("x: " + "a" * (2 << 20))
    with pytest.raises(ConfigError, match="larger than"):
        load_config(big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_trained_router_requires_artifact():
    text = GOOD.replace("{type: strongest}", "{type: knn}")
    with pytest.raises(ConfigError, match="needs an artifact"):
        parse_config(text, env={"SMALL_KEY": "k"})


def test_check_config_cli(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("model: big\n", "model: big\n    colour: red\n"))
    env = {"SMALL_KEY": "sk-do-not-print", "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, "-m", "router_gateway.cli", "check-config", str(good)],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "small:" in ok.stdout and "sk-do-not-print" not in ok.stdout + ok.stderr
    fail = subprocess.run([sys.executable, "-m", "router_gateway.cli", "check-config", str(bad)],
                          capture_output=True, text=True, env=env)
    assert fail.returncode == 1
    assert "experts.big.colour: unknown key" in fail.stderr
    assert "Traceback" not in fail.stderr


# -- values that validate as their type yet break the gateway later (issue 14) ---------------------

def _expert_with(line: str) -> str:
    return GOOD.replace("    model: big\n", f"    model: big\n{line}\n")


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace("127.0.0.1:2", "127.0.0.1:99999"), "experts.big.base_url: port must be a number from 1 to 65535"),
    (GOOD.replace("127.0.0.1:2", "127.0.0.1:0"), "port must be a number from 1 to 65535"),
    (GOOD.replace("http://127.0.0.1:2/v1", '"http://127.0.0.1:2/v 1"'), "must not contain spaces"),
    (GOOD.replace("http://127.0.0.1:2/v1", '"http://127.0.0.1:2/v1\\r\\nX-Injected: 1"'), "control characters"),
    (GOOD.replace("http://127.0.0.1:2/v1", "http://127.0.0.1:2/v1?key=1"), "must not have a query"),
    (GOOD.replace("http://127.0.0.1:2/v1", "http://:2/v1"), "has no host"),
    (_expert_with('    api_key: "sk-1\\r\\nX-Injected: 1"'), "experts.big.api_key: must not contain"),
    (_expert_with("    health_path: models"), "experts.big.health_path: must be a path"),
    (GOOD + "embedder: {backend: remote, url: 'http://127.0.0.1:70000/v1'}\n", "embedder.url: port must be"),
    (GOOD.replace("http://127.0.0.1:2/v1", "http://user:pw@127.0.0.1:2/v1"), "must not carry credentials"),
    # NUL/CR/LF in names and paths: a crash opening the file, or a served-model name no upstream knows
    (GOOD + 'logging: {path: "logs/a\\0b.db"}\n', "logging.path: must not contain control characters"),
    (GOOD.replace("{type: strongest}", '{type: knn, artifact: "a\\0b"}'), "routers.default.artifact: must not"),
    (GOOD.replace("model: big", 'model: "big\\r\\n"'), "experts.big.model: must not contain control"),
    (GOOD + 'embedder: {model: "mini\\0lm"}\n', "embedder.model: must not contain control"),
])
def test_urls_and_header_values_that_would_break_requests_are_refused(text, expected):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml", env={"SMALL_KEY": "k"})
    assert expected in str(info.value)


@pytest.mark.parametrize("key, value", [
    ("experts.big.price.input_per_mtok", ".inf"), ("experts.big.price.output_per_mtok", ".nan"),
    ("experts.big.price.input_per_mtok", "1e300"), ("server.drain_timeout_s", ".inf"),
    ("server.drain_timeout_s", "1e300"), ("server.request_deadline_s", ".inf"),
    ("server.breaker.cooldown_s", ".nan"), ("server.health_interval_s", ".nan"),
    ("experts.big.timeout.total", ".nan"), ("profiles.auto.cost_weight", ".nan"),
    ("embedder.max_wait_ms", ".nan"), ("experts.big.prior_quality", ".nan"),
    ("profiles.auto.explore", ".nan"), ("profiles.auto.expected_output_tokens", "9" * 400),
    ("experts.big.context_window", "9" * 30), ("server.max_body_bytes", "9" * 5000),
])
def test_non_finite_and_absurd_numbers_are_refused(key, value):
    """Every float field refuses inf and NaN; every number has a bound that keeps arithmetic finite."""
    data = yaml.safe_load(GOOD)
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = "__VALUE__"
    text = yaml.safe_dump(data, sort_keys=False)
    assert text.count("__VALUE__") == 1
    text = text.replace("__VALUE__", value)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml", env={"SMALL_KEY": "k"})
    message = str(info.value)
    assert f"{key}: " in message or "cannot read this value" in message, message
    assert "unable to parse string" not in message, message  # the number itself was refused
    assert "f.yaml:" in message


def test_router_params_refuse_non_finite_numbers_anywhere_inside():
    text = GOOD.replace("default: {type: strongest}", "default: {type: strongest, params: {a: {b: [1, .inf]}}}")
    with pytest.raises(ConfigError, match=r"routers.default.params: a.b.1: must be a finite number"):
        parse_config(text, "f.yaml", env={"SMALL_KEY": "k"})


def test_deep_nesting_is_a_clean_error_naming_the_line(tmp_path):
    deep = "{a: " * 300 + "1" + "}" * 300
    text = GOOD.replace("default: {type: strongest}", f"default: {{type: strongest, params: {deep}}}")
    with pytest.raises(ConfigError, match=r"f.yaml: line 14: nested deeper than 32 levels"):
        parse_config(text, "f.yaml", env={"SMALL_KEY": "k"})
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "router_gateway.cli", "check-config", str(path)],
                            capture_output=True, text=True, env={"SMALL_KEY": "k", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "line 14: nested deeper than 32 levels" in result.stderr


def test_a_file_with_too_many_values_is_refused_before_it_is_built(tmp_path):
    """200k list items fit in 400 kB; the pure-Python parser took 13-40 s on them. The value count is
    checked on the parser's events and stops at the first excess (eval/config_parse_bench.py times it)."""
    items = ",".join("x" for _ in range(200_000))
    path = tmp_path / "many.yaml"
    path.write_text(GOOD.replace("fallbacks: [small]", f"fallbacks: [small]\n    domains: [{items}]"))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ConfigError, match=r"many.yaml: line 13: more than 10000 values in one file"):
        load_config(path)


def test_unreadable_scalars_name_their_line():
    for value in ("2001-13-45", "9" * 5000):
        with pytest.raises(ConfigError, match=r"f.yaml: line 6: cannot read this value"):
            parse_config(GOOD.replace("model: small\n", f"model: small\n    note: {value}\n"), "f.yaml",
                         env={"SMALL_KEY": "k"})


def test_list_lengths_are_bounded():
    caps = ", ".join(f"c{i}" for i in range(65))
    with pytest.raises(ConfigError, match="experts.big.capabilities"):
        parse_config(_expert_with(f"    capabilities: [{caps}]"), "f.yaml", env={"SMALL_KEY": "k"})
