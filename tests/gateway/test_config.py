"""experts.yaml validation: good files load; hostile ones are refused with a message, never a traceback."""
from __future__ import annotations

import subprocess
import sys

import pytest

from router_gateway.config import load_config, parse_config
from router_gateway.config_yaml import ConfigError

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
