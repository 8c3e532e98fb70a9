"""Budget pacing: route cheaper as a budget runs ahead of its period, before it ever refuses.

A key with a daily or monthly budget, used through a profile with ``pacing``, gets an *effective*
cost weight instead of the profile's. The controller compares spend so far with the share of the
period that has elapsed: the plan is to have spent ``target x elapsed share`` of the budget by now
(uniform over the period; ``target`` < 1 leaves headroom below the hard limit, which stays as the
ceiling). The error ``e = spent/budget - target x elapsed`` (a share of the budget) drives the weight
in log space, so one gain works for weights from 0.01 to 100:

    log(w + c) = log(w_base + c) + kp * e / target + I,      I += ki * e / target * d(elapsed)

``e`` is already the running sum of the spend *rate* error, so the proportional term alone settles the
rate; the integral term removes the offset that would otherwise leave spend ahead of the plan by a
constant. ``c`` (0.1) lets a base weight of 0 (quality first) move. The result is clipped to the
operator's ``[min_cost_weight, max_cost_weight]`` and the integral is frozen while clipped (no wind-up).

Across replicas: every replica reads the same spend (Redis) and the same clock, so integrating the same
error over the same time gives each the same weight; nothing else needs sharing. The integral restarts
at 0 with each new period.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

SOFTEN = 0.1  # c above: lets a base weight of 0 be paced
PROFILE_PREFIX = "profile:"  # a profile's budget subject (capacity.profile_budget.subject)


@dataclass(frozen=True)
class PacingParams:
    """The operator's bounds and the controller's gains (profiles.<name>.pacing)."""

    min_cost_weight: float = 0.0
    max_cost_weight: float = 100.0
    target: float = 0.97
    kp: float = 8.0
    ki: float = 40.0


@dataclass
class _State:
    period: str = ""
    integral: float = 0.0
    last_elapsed: float = 0.0


@dataclass(frozen=True)
class PacingDecision:
    """What the controller decided for one request (logged, shown in headers and /v1/route)."""

    base: float
    effective: float
    period: str  # "day" or "month": the budget that binds
    spent_share: float  # spend so far / budget
    planned_share: float  # target x elapsed share of the period
    subject: str = ""  # whose budget binds: a key id, or "profile:<name>"

    def as_dict(self) -> dict:
        return {"base_cost_weight": self.base, "effective_cost_weight": round(self.effective, 6),
                "period": self.period, "spent_share": round(self.spent_share, 6),
                "planned_share": round(self.planned_share, 6), "budget": self.subject}


@dataclass
class BudgetPacer:
    """The controller's state per (subject, budget period); subject = key id or "profile:<name>"."""

    clock: callable = time.time
    _states: dict[tuple[str, str], _State] = field(default_factory=dict)
    _last: dict[str, PacingDecision] = field(default_factory=dict)  # subject -> latest decision (UI, metrics)

    def snapshot(self) -> dict[str, dict]:
        """The latest decision per key (or "profile:<name>"), for the live view and /metrics."""
        return {subject: d.as_dict() for subject, d in self._last.items()}

    def effective(self, subject: str, base: float, params: PacingParams,
                  budgets: list[tuple[str, float, float]]) -> PacingDecision | None:
        """``budgets``: (period kind "day"/"month", budget USD, spent USD). The binding one is the one
        furthest ahead of its plan; None when there is no budget to pace."""
        now = self.clock()
        best: PacingDecision | None = None
        for kind, budget, spent in budgets:
            if not budget or budget <= 0:
                continue
            label, elapsed = period_position(kind, now)
            decision = self._step(subject, kind, label, elapsed, base, budget, spent, params)
            if best is None or decision.effective > best.effective:
                best = decision
        if best is not None:
            self._last[subject] = best
        return best

    def _step(self, subject: str, kind: str, label: str, elapsed: float, base: float, budget: float,
              spent: float, p: PacingParams) -> PacingDecision:
        state = self._states.setdefault((subject, kind), _State())
        if state.period != label:  # a new day / month: start afresh
            state.period, state.integral, state.last_elapsed = label, 0.0, elapsed
        planned = p.target * elapsed
        error = (spent / budget - planned) / p.target
        d_elapsed = max(0.0, elapsed - state.last_elapsed)
        state.last_elapsed = elapsed
        start = math.log(base + SOFTEN)
        candidate_integral = state.integral + p.ki * error * d_elapsed
        raw = math.exp(start + p.kp * error + candidate_integral) - SOFTEN
        effective = min(max(raw, p.min_cost_weight), p.max_cost_weight)
        if effective == raw or (raw > p.max_cost_weight) == (error < 0):
            state.integral = candidate_integral  # integrate only when not pushing further into a bound
        return PacingDecision(base, effective, kind, spent / budget, planned, subject)


def period_position(kind: str, now: float) -> tuple[str, float]:
    """The UTC period's label and the share of it that has elapsed (0..1)."""
    dt = datetime.fromtimestamp(now, timezone.utc)
    if kind == "day":
        start = datetime(dt.year, dt.month, dt.day, tzinfo=timezone.utc).timestamp()
        return dt.strftime("%Y%m%d"), (now - start) / 86400.0
    start = datetime(dt.year, dt.month, 1, tzinfo=timezone.utc).timestamp()
    end = datetime(dt.year + dt.month // 12, dt.month % 12 + 1, 1, tzinfo=timezone.utc).timestamp()
    return dt.strftime("%Y%m"), (now - start) / (end - start)


def budget_pacing(gateway, key, profile_name: str | None = None) -> "callable | None":
    """A function (profile, base weight) -> PacingDecision for routing, when the key or the profile
    (``profile_name``: the request's model) has a budget. When both pace, the greater effective weight
    wins: the budget furthest ahead of its plan decides, as between a key's day and month."""
    if gateway.spend is None:
        return None
    subjects = []
    if key is not None and (key.budget_usd_day is not None or key.budget_usd_month is not None):
        subjects.append((key.id, key.budget_usd_day, key.budget_usd_month))
    profiles = gateway.runtime.config.profiles if gateway.runtime is not None else {}
    budget = profiles[profile_name].budget if profile_name in profiles else None
    if budget is not None:
        subjects.append((PROFILE_PREFIX + profile_name, budget.usd_per_day, budget.usd_per_month))
    if not subjects:
        return None

    def pace(profile, base: float) -> PacingDecision | None:
        settings = profile.pacing
        params = PacingParams(settings.min_cost_weight, settings.max_cost_weight, settings.target,
                              settings.kp, settings.ki)
        best = None
        for subject, per_day, per_month in subjects:
            day, month = gateway.spend.spent(subject)
            decision = gateway.pacer.effective(subject, base, params, [("day", per_day, day),
                                                                       ("month", per_month, month)])
            if decision is not None and (best is None or decision.effective > best.effective):
                best = decision
        return best
    return pace
