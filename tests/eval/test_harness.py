"""The harness end to end on the real `routerarena` table with the real embedder.

A seeded sample of 300 prompts keeps a cold run (embedding without a cache) short on 2 cores; later
runs read the embeddings from the on-disk cache.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eval import harness as H
from eval import metrics as M
from eval.report import write_json, write_report
from eval.tables import load_eval_table, sample_table
from routers.baselines import StrongestRouter
from routers.registry import available_routers

TABLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "bench" / "routerarena.csv"
FAST = [r for r in ("knn", "cluster", "strongest", "random", "cheapest") if r in available_routers()]


@pytest.fixture(scope="module")
def arena():
    if not TABLE.exists():
        pytest.skip(f"{TABLE} not found")
    table = sample_table(load_eval_table(TABLE), 300, seed=0)
    return table, H.embed_table(table)


def test_harness_metric_properties_and_reproducibility(arena, tmp_path):
    table, X = arena
    report = H.evaluate(table, X, FAST, n_folds=5, seed=0)
    oracle = report.oracle.metrics
    assert oracle["auc"] >= report.single["auc"]
    for name, r in report.routers.items():
        assert r.error is None, (name, r.error)
        m = r.metrics
        assert oracle["auc"] >= m["auc"] - 1e-12, name
        assert oracle["max_quality"] >= m["max_quality"] - 1e-12, name
        xs = np.unique(r.frontier.cost)
        assert np.all(np.diff(M.q_at(r.frontier.cost, r.frontier.quality, xs)) >= 0), name
        assert 0 <= m["auc"] <= 1 and m["route_ms"] >= 0
        assert m["apgr"] is not None  # a two-model table
    again = H.evaluate(table, X, FAST, n_folds=5, seed=0)
    strip = lambda rep: {n: {k: v for k, v in d.items() if k not in ("route_ms", "fit_s")}  # noqa: E731
                         for n, d in rep.to_json()["routers"].items()}
    assert strip(report) == strip(again)

    write_json(report, tmp_path / "m.json")
    data = json.loads((tmp_path / "m.json").read_text())
    assert set(data) >= {"table", "n_prompts", "models", "routers", "baselines"}
    assert set(data["baselines"]) >= {"single_models", "best_single", "single_model_frontier", "oracle"}
    page = write_report(report, tmp_path / "out")
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 10_000
    assert "| task |" in (tmp_path / "out" / "picks.md").read_text()
    assert "frontier.png" in page.read_text()


def test_a_failing_router_is_reported_not_fatal(arena, monkeypatch):
    table, X = arena

    class Broken(StrongestRouter):  # a router (it declares its abilities) whose fit fails
        def fit(self, *a, **k):
            raise RuntimeError("boom")

    monkeypatch.setattr(H, "build_router", lambda name, seed, params=None: Broken())
    report = H.evaluate(table, X, ["strongest"], seed=0)
    assert "boom" in report.routers["strongest"].error
    assert report.to_json()["routers"]["strongest"]["error"].endswith("boom")


def test_cli_eval_writes_json(arena, tmp_path):
    from router_gateway.cli import main

    out = tmp_path / "metrics.json"
    rc = main(["eval", str(TABLE), "--routers", "strongest,random", "--sample", "300", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["n_prompts"] == 300 and set(data["routers"]) == {"strongest", "random"}
