"""The cascade eval scenario on a small synthetic table with answers (no embedder: random vectors)."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from eval.cascade import _outcomes, auroc, cascade_markdown, oracle_cascade, run_cascade
from router_gateway.cascade.service import threshold_of
from router_gateway.cascade.settings import CascadeSettings
from routers.data import RoutingTable


def _table(n: int = 200, seed: int = 0) -> tuple[RoutingTable, dict[str, list[str]]]:
    """cheap is right when its (recomputed) arithmetic is right; strong is right 90% of the time."""
    rng = np.random.default_rng(seed)
    cheap_right = rng.random(n) < 0.6
    strong_right = rng.random(n) < 0.9
    prompts = [f"Ann has {i} pens and buys {i + 2} more. How many?" for i in range(n)]
    answers = [f"{i} + {i + 2} = <<{i}+{i + 2}={2 * i + 2 + (0 if ok else 1)}>>{2 * i + 2 + (0 if ok else 1)}\n"
               f"#### {2 * i + 2 + (0 if ok else 1)}" for i, ok in enumerate(cheap_right)]
    scores = np.stack([strong_right, cheap_right], axis=1).astype(float)
    costs = np.tile([1e-3, 2e-5], (n, 1)) * rng.uniform(0.8, 1.2, (n, 2))
    table = RoutingTable("synthetic", prompts, np.arange(n) % 5, ["t"] * n, ["strong", "cheap"], scores, costs)
    return table, {"cheap": answers}


def test_outcomes_charge_both_tiers_on_escalation():
    table, _ = _table(10)
    esc = np.zeros((1, 10), dtype=bool)
    esc[0, :3] = True
    cost, q = _outcomes(table, 1, 0, np.zeros_like(esc), esc)
    want_cost = (table.costs[:, 1].sum() + table.costs[:3, 0].sum()) / 10
    want_q = (table.scores[:3, 0].sum() + table.scores[3:, 1].sum()) / 10
    assert cost[0] == pytest.approx(want_cost) and q[0] == pytest.approx(want_q)


def test_auroc_matches_the_pairwise_definition():
    rng = np.random.default_rng(1)
    s, y = rng.integers(0, 5, 300).astype(float), rng.random(300) < 0.4
    pairs = [(a > b) + 0.5 * (a == b) for a in s[y] for b in s[~y]]
    assert auroc(s, y) == pytest.approx(np.mean(pairs))


def test_cascade_with_arithmetic_check_beats_routing_on_prompts_alone(tmp_path):
    table, answers = _table()
    rng = np.random.default_rng(2)
    X = rng.normal(size=(len(table), 8)).astype(np.float32)  # prompt embeddings say nothing here
    A = rng.normal(size=(len(table), 8)).astype(np.float32)
    result = run_cascade(table, X, answers, ["knn"], ["knn"], answer_embeddings=A, plot_path=tmp_path / "f.png",
                         rows_path=tmp_path / "rows.csv")
    assert (tmp_path / "f.png").stat().st_size > 10_000
    settings = CascadeSettings(calibrate={"rows": str(tmp_path / "rows.csv"), "quality_floor": 0.95})
    t = threshold_of(settings)  # the calibrated threshold accepts answers that are right >= 95% of the time
    with open(tmp_path / "rows.csv") as f:
        rows = [(float(r["confidence"]), float(r["correct"])) for r in csv.DictReader(f)]
    accepted = [y for c, y in rows if c >= t]
    assert len(rows) == len(table) and len(accepted) >= 20 and np.mean(accepted) >= 0.95
    casc = result["cascades"]
    assert casc["cascade[threshold] features"]["verifier_auroc"] > 0.95  # the wrong step is found
    assert casc["cascade[gain] knn+features"]["auc"] > result["routers"]["knn"]["auc"] + 0.05
    assert casc["cascade[oracle verifier]"]["auc"] >= casc["cascade[gain] knn+features"]["auc"] - 1e-9
    assert "| cascade[gain] knn+features |" in cascade_markdown(result)


def test_oracle_cascade_escalates_only_where_strong_is_better():
    table, _ = _table(50)
    front = oracle_cascade(table, 1, 0)
    gain = table.scores[:, 0] - table.scores[:, 1]
    assert front.quality.max() == pytest.approx(np.maximum(table.scores[:, 1], table.scores[:, 0]).mean())
    assert front.cost.max() == pytest.approx((table.costs[:, 1].sum() + table.costs[gain > 0, 0].sum()) / 50)


def test_cascade_scenario_refuses_a_table_without_answers_before_embedding(tmp_path, capsys):
    from router_gateway.cli import main

    path = tmp_path / "t.csv"
    path.write_text("prompt,fold,task,score:a,score:b,cost:a,cost:b\nhi,0,t,1,0,0.1,0.2\n")
    assert main(["eval", str(path), "--scenario", "cascade"]) == 2
    assert "no answer:<model> columns" in capsys.readouterr().err
