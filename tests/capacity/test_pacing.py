"""The budget pacing controller on a simulated clock."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from router_gateway.capacity.pacing import BudgetPacer, PacingParams, period_position

DAY = datetime(2026, 3, 10, tzinfo=timezone.utc).timestamp()


def _pacer(t):
    return BudgetPacer(clock=lambda: t["now"])


def test_on_plan_keeps_the_base_weight():
    t = {"now": DAY + 43200}  # half the day gone, half the (targeted) budget spent
    p = PacingParams(target=1.0)
    d = _pacer(t).effective("k", 0.5, p, [("day", 10.0, 5.0)])
    assert d.effective == pytest.approx(0.5)
    assert d.planned_share == pytest.approx(0.5) and d.spent_share == pytest.approx(0.5)


def test_ahead_of_plan_raises_the_weight_behind_lowers_it_within_bounds():
    t = {"now": DAY + 43200}
    p = PacingParams(min_cost_weight=0.2, max_cost_weight=3.0, target=1.0)
    ahead = _pacer(t).effective("k", 0.5, p, [("day", 10.0, 8.0)])
    behind = _pacer(t).effective("k", 0.5, p, [("day", 10.0, 1.0)])
    assert 0.5 < ahead.effective <= 3.0
    assert 0.2 <= behind.effective < 0.5
    far_ahead = _pacer(t).effective("k", 0.5, p, [("day", 10.0, 10.0)])
    assert far_ahead.effective == 3.0  # clipped to the operator's bound


def test_a_zero_base_weight_can_be_paced():
    t = {"now": DAY + 3600}
    d = _pacer(t).effective("k", 0.0, PacingParams(), [("day", 1.0, 0.5)])
    assert d.effective > 0.0


def test_the_integral_keeps_pushing_while_spend_stays_ahead():
    t = {"now": DAY + 3600}
    pacer = _pacer(t)
    p = PacingParams(target=1.0)
    first = pacer.effective("k", 0.5, p, [("day", 10.0, 1.0)]).effective
    t["now"] += 3600  # an hour later, still as far ahead of the plan
    second = pacer.effective("k", 0.5, p, [("day", 10.0, 1.0 + 10.0 / 24)]).effective
    assert second > first


def test_the_tighter_budget_binds_and_a_new_day_starts_afresh():
    t = {"now": DAY + 43200}
    pacer = _pacer(t)
    p = PacingParams(target=1.0)
    d = pacer.effective("k", 0.5, p, [("day", 10.0, 5.0), ("month", 100.0, 90.0)])
    assert d.period == "month" and d.effective > 0.5
    t["now"] = DAY + 86400 + 1
    label, elapsed = period_position("day", t["now"])
    assert label == "20260311" and elapsed < 1e-3
    fresh = pacer.effective("k", 0.5, p, [("day", 10.0, 0.0)])
    assert fresh.effective == pytest.approx(0.5, abs=1e-3)


def test_no_budget_means_no_pacing():
    assert _pacer({"now": DAY}).effective("k", 0.5, PacingParams(), [("day", None, 0.0)]) is None
