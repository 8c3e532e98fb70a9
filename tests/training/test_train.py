"""`router-gateway train` from logs and tables, artifact meta, and the compatibility check."""
from __future__ import annotations

import json

import numpy as np
import pytest

from router_gateway.cli import main
from router_gateway.training.data import load_logs
from router_gateway.training.pipeline import check_artifact_compatible
from routers.artifact import load_artifact
from routers.base import RouterError
from tests.support.configs import config_text, expert
from tests.support.training_data import FAKE_INFO, fake_embed, write_logs, write_table


def test_load_logs_skips_and_counts(tmp_path):
    data = load_logs(write_logs(tmp_path / "logs.jsonl"))
    assert data.experts == ["big", "coder", "small"]
    assert len(data.prompts) == 300
    assert data.skipped == {"bad_json": 1, "no_prompt": 1, "no_feedback": 1}
    assert np.all(np.sum(~np.isnan(data.Y), axis=1) == 1)      # one label per request
    data2 = load_logs(tmp_path / "logs.jsonl", experts=["small", "coder"])
    assert data2.experts == ["small", "coder"] and data2.skipped["unknown_expert"] > 0


@pytest.mark.parametrize("router", ["knn", "cluster", "classifier", "bandit", "policy"])
def test_train_from_logs(tmp_path, fake_embedder, router, capsys):
    logs = write_logs(tmp_path / "logs.jsonl")
    params = ["--param", "k=20"] if router == "knn" else ["--param", "n_clusters=4"] if router == "cluster" else []
    rc = main(["train", "--router", router, "--from-logs", str(logs), "--out", str(tmp_path / "art"), *params])
    assert rc == 0, capsys.readouterr().err
    loaded, meta = load_artifact(tmp_path / "art")
    assert meta["router_type"] == router and meta["embedder"] == FAKE_INFO
    assert meta["source"]["kind"] == "logs" and len(meta["data_sha256"]) == 64
    assert meta["training_metrics"]["n_prompts"] == 300 and "created" in meta
    X, _ = fake_embed([f"{'math' if i % 2 == 0 else 'chat'} question {1000 + i}" for i in range(100)])
    s = loaded.predict_scores(X)
    coder = meta["experts"].index("coder")
    assert s[0::2, coder].mean() > s[1::2, coder].mean()        # learnt that coder is good at math


def test_train_from_table_with_params_and_domains(tmp_path, fake_embedder):
    table = write_table(tmp_path / "t.csv")
    assert main(["train", "--router", "domain", "--from-table", str(table), "--out", str(tmp_path / "d")]) == 0
    router, meta = load_artifact(tmp_path / "d")
    assert sorted(router.domains_) == ["chat", "math"] and meta["source"]["kind"] == "table"
    assert main(["train", "--router", "knn", "--from-table", str(table), "--out", str(tmp_path / "k"),
                 "--param", "k=7", "--param", "weighted=true"]) == 0
    assert load_artifact(tmp_path / "k")[1]["params"] == {"k": 7, "shrinkage": 0.0, "weighted": True}


def test_train_errors(tmp_path, fake_embedder, capsys):
    table = write_table(tmp_path / "t.csv")
    assert main(["train", "--router", "nope", "--from-table", str(table), "--out", str(tmp_path / "x")]) == 1
    assert "unknown router type" in capsys.readouterr().err
    assert main(["train", "--router", "knn", "--from-table", str(table), "--out", str(tmp_path / "x"),
                 "--param", "bogus=1"]) == 1


def test_check_artifact_compatible():
    meta = {"embedder": FAKE_INFO, "n_features": 8, "experts": ["a", "b"]}
    check_artifact_compatible(meta, FAKE_INFO, ["a", "b", "c"])
    with pytest.raises(RouterError, match="embedder"):
        check_artifact_compatible(meta, {**FAKE_INFO, "name": "other"}, ["a", "b"])
    with pytest.raises(RouterError, match=r"\['b'\]"):
        check_artifact_compatible(meta, FAKE_INFO, ["a"])


def test_ope_command(tmp_path, fake_embedder, capsys):
    logs = write_logs(tmp_path / "logs.jsonl", n=600)
    assert main(["train", "--router", "knn", "--from-logs", str(logs), "--out", str(tmp_path / "a"),
                 "--param", "k=30"]) == 0
    assert main(["ope", "--logs", str(logs), "--artifact", str(tmp_path / "a"), "--json",
                 str(tmp_path / "ope.json")]) == 0
    out = json.loads((tmp_path / "ope.json").read_text())
    logging_q = out["logging_policy"]["quality"]["value"]
    cand = out["candidate"]["quality"]
    assert set(cand) == {"ips", "snips", "dr"}
    assert cand["dr"]["value"] > logging_q        # routing math to coder beats uniform logging
    assert cand["ips"]["lo"] < cand["ips"]["value"] < cand["ips"]["hi"]
    assert "candidate quality dr" in capsys.readouterr().out


def _labels_and_experts(tmp_path, coder_domains=("math",)):
    labels = tmp_path / "labels.csv"
    labels.write_text("text,category\n" + "".join(
        f"{'math' if i % 2 == 0 else 'chat'} prompt {i},{'math' if i % 2 == 0 else 'chat'}\n" for i in range(80)))
    experts = tmp_path / "experts.yaml"
    experts.write_text(config_text({"coder": expert("http://c/v1", "c", 1, 1, domains=list(coder_domains)),
                                    "chatty": expert("http://h/v1", "h", 1, 1, domains=["chat"]),
                                    "generalist": expert("http://g/v1", "g", 1, 1)}))
    return labels, experts


def test_train_domain_router_from_labels_and_experts_yaml_domains(tmp_path, fake_embedder, capsys):
    labels, experts = _labels_and_experts(tmp_path)
    code = main(["train", "--router", "domain", "--from-labels", str(labels), "--experts", str(experts),
                 "--out", str(tmp_path / "dom")])
    assert code == 0, capsys.readouterr().err
    router, meta = load_artifact(tmp_path / "dom")
    assert meta["experts"] == ["coder", "chatty", "generalist"]
    assert meta["domain_map"]["expert_domains"] == {"coder": ["math"], "chatty": ["chat"], "generalist": []}
    assert meta["training_metrics"]["n_prompts"] == 80 and meta["training_metrics"]["train_accuracy"] > 0.9
    X, _ = fake_embedder(["math new question", "chat new question"])
    s = router.predict_scores(X)
    assert s[0].argmax() == 0 and s[1].argmax() == 1        # the listing expert wins its domain
    assert s[0, 2] == pytest.approx(s[1, 2])                # a generalist scores the same everywhere


def test_train_from_labels_refuses_bad_combinations(tmp_path, fake_embedder, capsys):
    labels, experts = _labels_and_experts(tmp_path, coder_domains=("math", "law"))
    out = str(tmp_path / "x")
    assert main(["train", "--router", "knn", "--from-labels", str(labels), "--experts", str(experts),
                 "--out", out]) == 2
    assert main(["train", "--router", "domain", "--from-labels", str(labels), "--out", out]) == 2
    assert main(["train", "--router", "domain", "--from-labels", str(labels), "--experts", str(experts),
                 "--out", out]) == 1
    assert "law" in capsys.readouterr().err  # a domain in experts.yaml with no labelled prompts
    assert main(["train", "--router", "domain", "--from-labels", str(labels), "--experts", str(experts),
                 "--label-column", "nope", "--out", out]) == 1
