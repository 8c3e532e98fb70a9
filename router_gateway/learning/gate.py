"""The promotion gate: may a candidate router replace the live one, judged on labelled prompts it never saw?

The statistic is paired and per prompt. On a prompt, a router at cost weight ``w`` chooses an expert
the way the gateway does (utility = score - w * normalised price) and is worth that expert's grade
minus ``w`` times its price (where the chosen expert was not graded on that prompt, its mean grade
over those prompts stands in: labels are partial), divided by ``1 + w`` so that every weight weighs
alike. Averaged over the cost-weight sweep this is one number per prompt and router, and the gate
looks at per-prompt differences on the same prompts:

1. *Not worse than the live router* (paired over prompts): ``mean(d) + z * se(d) > min_gain`` (``min_gain``
   0: not worse within ``z`` standard errors; negative: that much loss is accepted; positive: a gain is required).
2. *Against shuffled-label controls* (a permutation test): the same recipe is cross-fitted on the
   labels shuffled across prompts ``controls`` times; their mean gains over the live router are the
   null distribution of what a candidate gains when its labels carry no information about the
   prompt. The candidate's gain must lie ``null_z`` of their standard deviations above their mean
   (scaled by sqrt(1 + 1/controls): the candidate is one more draw). This is what keeps a candidate
   trained on shuffled labels out: it is exchangeable with the controls, so it passes at the rate of
   a one-sided t test at ``null_z`` with ``controls - 1`` degrees of freedom, whatever the live router
   is. Test 1 alone does not: a live router with wrong priors is beaten by any candidate that merely
   learnt the experts' mean grades, which shuffled labels still teach. So test 2 asks "did the
   candidate learn something from these labels?" and test 1 "does it lose anything against what
   runs now?" (the issue's rule: promoted only when not worse).

Why utility at fixed weights and not the area under the frontier (what eval reports): at a fixed
weight, a router whose scores are noise mixes experts arbitrarily and its utility is at most the best
single expert's, so noise cannot win; the per-prompt values make the test paired (the prompts'
difficulty cancels) and cheap (no bootstrap). Replayed on ``llmrouter`` (eval.learning_sim), the
paired statistic reached a given confidence with fewer labels than the bootstrap of the hull auc it
replaces, and the gain shows at the quality end of the frontier (weights up to ``max_weight``): there
the labelled prompts judge both routers on grades they actually got. At dearer weights the cheap
experts' grades are sparse under the value policy and their imputed means drown the comparison. A
refit of the live learned router (``not_worse``) needs test 1 and only to stay above the controls'
mean gain (its recipe already passed test 2, and requiring it again each time would freeze the
first promoted router).

``signal: residual`` measures test 2 on another statistic: how much the candidate's cross-fitted scores
covary with the grades beyond each expert's mean grade (``residual_signal``), against the same
controls, and then asks only that its gain exceed the controls' mean; ``either`` (the default) passes
on either statistic. The residual uses every grade, where the decision gain moves only on prompts where
two routers choose differently, so it keeps its power on noisy grades (replay, 10% flipped: largest
lead +9.8 sd against +3.4), and a candidate on shuffled labels is as exchangeable with its controls as
before. Its null has a heavier tail than the t approximation, so it has its own threshold
(``residual_z_min``, gate.residual_null_z 3.0): on 1,000 seeds of shuffled unit-test labels
(eval.gate_false_pass) one retrain passes 1.7% of the time on the decision gain alone at 2.33, 2.0%
with ``either`` at 2.33 / 3.0 (3.1% with both at 2.33), and ``either`` passes wherever ``decisions``
does. On the replay's ten seeds (candidate shrinkage 2) it closed 0.259 clean / 0.189 noisy against
0.236 / 0.171 for ``decisions`` alone, and no shuffled run was promoted.

Why impute the mean grade for an ungraded choice, when it is biased against a router that picks an
expert where that expert beats its average? The alternative measured (each router chooses only among
the experts graded on the prompt) is worse, and unsafe: the shadow policy grades the experts the
candidate of the time favoured, so which experts are graded on a prompt carries information about the
prompt that the shuffled-label controls do not have (their label rows move with their grading
patterns), and a candidate on shuffled labels beat its controls: promoted in one of five seeds of the
replay with four shadow answers per prompt (eval/reports/llmrouter/learning_variants.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from routers.policy import choose_batch


@dataclass(frozen=True)
class GateResult:
    passed: bool
    rows: int
    live_value: float
    candidate_value: float
    gain: float
    stderr: float
    reason: str
    null_z: float = float("nan")  # the candidate's gain over the shuffled-label controls, in their sd
    ope: dict | None = None  # the logged-traffic check (learning.ope_check), where propensities exist

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


#: cost weights of the sweep (costs are prices normalised to the dearest expert): 0, then
#: log-spaced up to where every prompt goes to its cheapest expert
SWEEP = np.concatenate([[0.0], np.logspace(-3, 1.5, 60)])


def frontier_rows(pred: np.ndarray, Y: np.ndarray, norm_cost: np.ndarray,
                  weights: np.ndarray = SWEEP) -> tuple[np.ndarray, np.ndarray]:
    """Per cost weight and prompt, the chosen expert's grade (imputed where ungraded) and cost:
    two (n_weights, n_prompts) arrays whose row means are the router's operating points."""
    pred = np.nan_to_num(np.asarray(pred, dtype=np.float64), nan=0.0)
    cost = np.broadcast_to(np.asarray(norm_cost, dtype=np.float64), pred.shape)
    seen = ~np.isnan(Y)
    means = np.where(seen.sum(0) > 0, np.nansum(Y, 0) / np.maximum(seen.sum(0), 1), 0.0)
    rows = np.arange(pred.shape[0])
    quality, spend = np.empty((len(weights), len(rows))), np.empty((len(weights), len(rows)))
    for k, w in enumerate(weights):
        choice = choose_batch(pred, cost, float(w))
        quality[k] = np.where(seen[rows, choice], np.nan_to_num(Y[rows, choice]), means[choice])
        spend[k] = cost[rows, choice]
    return quality, spend


def prompt_values(pred: np.ndarray, Y: np.ndarray, norm_cost: np.ndarray, weights: np.ndarray = SWEEP) -> np.ndarray:
    """Per prompt: the router's utility (grade - w * cost) / (1 + w), averaged over the weights."""
    quality, spend = frontier_rows(pred, Y, norm_cost, weights)
    w = np.asarray(weights, dtype=np.float64)[:, None]
    return ((quality - w * spend) / (1.0 + w)).mean(axis=0)


def gate_weights(max_weight: float, cost_weight: float = 0.0) -> np.ndarray:
    """The sweep's weights from 0 up to ``max_weight`` or the profile's own cost weight, whichever is
    larger (the profile's weight included): the operating points its clients use and dearer ones."""
    top = max(float(max_weight), float(cost_weight))
    return np.union1d(SWEEP[SWEEP <= top], [float(cost_weight)])


def null_z(gain: float, null_gains: np.ndarray) -> float:
    """How far ``gain`` lies above the controls' gains, in their standard deviation (see module doc)."""
    k = len(null_gains)
    if k < 2:
        return float("inf")
    sd = float(np.std(null_gains, ddof=1)) * np.sqrt(1.0 + 1.0 / k)
    return float((gain - np.mean(null_gains)) / max(sd, 1e-12))


def residual_signal(pred: np.ndarray, Y: np.ndarray) -> float:
    """How much the scores say about each graded answer beyond its expert's mean grade: the mean
    product of the score's and the grade's deviations from their expert's means over graded cells.
    Unlike the decision gain it uses every grade, not only the prompts where two routers choose
    differently, so noise in the grades costs it less power (see module doc)."""
    pred = np.asarray(pred, dtype=np.float64)
    seen = ~np.isnan(Y) & ~np.isnan(pred)
    if not seen.any():
        return 0.0
    count = np.maximum(seen.sum(0), 1)
    y = np.where(seen, np.nan_to_num(Y), 0.0)
    p = np.where(seen, np.nan_to_num(pred), 0.0)
    y_dev = np.where(seen, y - y.sum(0) / count, 0.0)
    p_dev = np.where(seen, p - p.sum(0) / count, 0.0)
    return float((p_dev * y_dev).sum() / seen.sum())


def gate(live_pred: np.ndarray, cand_pred: np.ndarray, Y: np.ndarray, norm_cost: np.ndarray,
         min_gain: float = 0.0, z: float = 1.0, min_rows: int = 20, null_preds=(), null_z_min: float = 2.33,
         not_worse: bool = False, weights: np.ndarray = SWEEP, signal: str = "decisions",
         residual_z_min: float | None = None) -> GateResult:
    """Paired test of candidate vs live on held-out labelled prompts, and a permutation test against
    the shuffled-label controls ``null_preds`` (none: that test is skipped); see module doc."""
    n = int(Y.shape[0])
    if n < min_rows:
        return GateResult(False, n, float("nan"), float("nan"), float("nan"), float("nan"),
                          f"{n} held-out prompts < min_rows {min_rows}")
    norm_cost = np.asarray(norm_cost, dtype=np.float64)
    live = prompt_values(live_pred, Y, norm_cost, weights)
    cand = prompt_values(cand_pred, Y, norm_cost, weights)
    d = cand - live
    gain = float(d.mean())
    stderr = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    nulls = np.array([float((prompt_values(p, Y, norm_cost, weights) - live).mean()) for p in null_preds])
    zn = null_z(gain, nulls) if len(nulls) else float("nan")
    # strict: a candidate choosing exactly as the live router on every prompt (gain 0, stderr 0) has
    # nothing to offer, and with a canary configured it would put a copy of the live router on trial
    passed = gain + z * stderr > min_gain
    reason = (f"gain {gain:+.4f} + {z:g} x stderr {stderr:.4f} {'>' if passed else '<='} min_gain {min_gain:g} "
              f"(not worse than the live {'learned ' if not_worse else ''}router)")
    if not len(nulls):
        return GateResult(bool(passed), n, float(live.mean()), float(cand.mean()), gain, stderr, reason, zn)
    if not_worse:  # a refit of a recipe that already beat its controls: it must stay above their mean
        beats = gain > nulls.mean()
        reason += f"; {'above' if beats else 'not above'} the shuffled-label controls' mean gain {nulls.mean():+.4f}"
    else:
        beats = False
        if signal in ("decisions", "either"):
            beats = zn > null_z_min
            reason += (f"; {zn:+.2f} sd {'above' if beats else 'not above'} {len(nulls)} shuffled-label controls "
                       f"(needs > {null_z_min:g})")
        if signal in ("residual", "either") and not beats:
            zr = null_z(residual_signal(cand_pred, Y), np.array([residual_signal(p, Y) for p in null_preds]))
            zr_min = null_z_min if residual_z_min is None else residual_z_min
            above = gain > nulls.mean()
            beats = zr > zr_min and above
            reason += (f"; grade signal {zr:+.2f} sd {'above' if zr > zr_min else 'not above'} {len(nulls)} "
                       f"shuffled-label controls (needs > {zr_min:g}), gain {'above' if above else 'not above'} "
                       f"their mean {nulls.mean():+.4f}")
            zn = zr if signal == "residual" else max(zn, zr)
    return GateResult(bool(passed and beats), n, float(live.mean()), float(cand.mean()), gain, stderr, reason, zn)
