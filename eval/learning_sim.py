"""Replay a routing table as live traffic through the learning loop (issue 20's figures).

    python -m eval.learning_sim                       # llmrouter, seeds 0..9: value clean/noisy, random, shuffled

The real classes run: ``LabelStore`` (SQLite), ``ShadowPolicy``, ``ShadowBudget``, ``LearningLoop``
(retrain -> gate -> promote) and ``ArtifactPromoter`` (artifacts written and loaded back). Only the
experts and the judge are replaced by the table: a shadow answer's grade is the table's score of
that expert on that prompt (optionally flipped, 1 - score, with probability ``--flip``: a noisy judge;
``--runs value:0.1`` draws a flip per judge call, ``value:0.1:persistent`` once per (prompt, expert),
so a judge asked again repeats it). Surprising grades are asked again as the gateway does
(``--regrade``/``--surprise``, learning.regrade), every extra call priced in the shadow budget.

Protocol. Traffic is the table's prompts outside the held-out fold (``--held-fold``), once each, in a
seeded random order. The profile starts on the ``strongest`` baseline (priors = the models' mean
scores on the traffic) with cost weight ``--cost-weight`` (0: the strongest model answers everything
until a promotion). Live spend is the table's cost of the expert the live router chose. Shadow spend
is counted honestly: every shadow answer at the table's cost of that expert on that prompt, and every
grade (the live answer's too) at the judge's price for the grading prompt, the question and a
128-token answer in, 4 tokens out. The figure after each promotion is the live router's gap closed
(issue 5's auc between the single-model and the oracle frontier, eval.metrics) on the held-out fold,
against cumulative shadow spend as a share of cumulative live spend.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from eval import metrics as M
from router_gateway.learning.budget import ShadowBudget
from router_gateway.learning.graders import Grade
from router_gateway.learning.judge import ABSOLUTE_OVERHEAD_TOKENS
from router_gateway.learning.loop import LearningLoop
from router_gateway.learning.policy import ShadowPolicy
from router_gateway.learning.promote import ArtifactPromoter
from router_gateway.learning.regrade import combine, predicted_grades, settled, surprising
from router_gateway.learning.settings import (
    GateSettings,
    LearningSettings,
    PromoteSettings,
    RetrainSettings,
    ShadowSettings,
)
from router_gateway.learning.store import LabelStore
from router_gateway.state.request_log import prompt_digest
from routers.baselines import StrongestRouter
from routers.data import RoutingTable
from routers.policy import rank_experts

ANSWER_TOKENS = 128  # the table's cost assumes 128 output tokens
JUDGE_OUT_TOKENS = 4


def log(msg: str) -> None:
    print(f"[learning-sim] {msg}", file=sys.stderr, flush=True)


def read_prices(table: RoutingTable, path: Path) -> np.ndarray:
    """USD per token (input = output in these tables) per model, from ``<table>.models.csv``."""
    with open(path, newline="") as f:
        rows = {r["model"]: float(r["input_usd_per_mtok"]) for r in csv.DictReader(f)}
    return np.array([rows[m] for m in table.models]) / 1e6


class Measure:
    """Gap closed of a router's scores on the held-out fold."""

    def __init__(self, S: np.ndarray, C: np.ndarray, models: list[str]):
        self.S, self.C = S, C
        self.base = M.baselines(S, C, models)
        self.grid = M.cost_weight_grid(C)
        self.single = M.single_model_frontier(self.base)["auc"]
        self.oracle = M.oracle(S, C, self.base, self.grid)[0]["auc"]

    def gap(self, pred: np.ndarray) -> float:
        front, _ = M.sweep(pred, self.S, self.C, self.grid)
        return float(M.gap_closed(M.auc(front.cost, front.quality, self.base.c_min, self.base.c_max),
                                  self.single, self.oracle))


class NoisyJudge:
    """The table's scores as a judge's grades, flipped (1 - score) with probability ``flip`` per call
    (``independent``: every call draws anew, so asking again can correct it) or per (prompt, expert)
    (``persistent``: the judge repeats its mistake on every call)."""

    def __init__(self, G: np.ndarray, flip: float, noise: str, seed: int):
        self.G, self.flip, self.noise, self.seed = G, flip, noise, seed
        self.rng = np.random.default_rng(seed + 1)

    def __call__(self, i: int, e: int) -> float:
        if self.noise == "persistent":
            flipped = np.random.default_rng([self.seed, 7, int(i), int(e)]).random() < self.flip
        else:
            flipped = self.rng.random() < self.flip
        return float(1.0 - self.G[i, e] if flipped else self.G[i, e])


def simulate(table: RoutingTable, X: np.ndarray, prices: np.ndarray, args, policy_mode: str, flip: float,
             workdir: Path, shuffle: bool = False, seed: int = 0, noise: str = "independent",
             regrade: int | None = None) -> dict:
    """One pass of the traffic; returns the curve and the totals. ``shuffle``: every grade is the
    score of another (random) prompt, so the labels carry no information (the gate's control)."""
    rng = np.random.default_rng(seed)
    held = table.folds == args.held_fold
    traffic = rng.permutation(np.flatnonzero(~held))
    S, C, experts = table.scores, table.costs, list(table.models)
    G = S[np.random.default_rng(seed + 2).permutation(len(S))] if shuffle else S  # what the judge says
    measure = Measure(S[held], C[held], experts)
    norm_cost = prices / prices.max()
    judge = experts.index(args.judge)
    tokens = C / prices[None, :]  # the table's cost = price x (prompt tokens + 128)
    grade_cost = prices[judge] * (tokens + ABSOLUTE_OVERHEAD_TOKENS + JUDGE_OUT_TOKENS)  # per answer graded
    settings = LearningSettings(
        shadow=ShadowSettings(sample=args.sample, policy=policy_mode, max_experts=args.max_experts,
                              usd_per_day=1e9, max_share=args.max_share),
        retrain=RetrainSettings(router=args.router, params=json.loads(args.params), every_labels=args.every,
                                min_labels=args.min_labels, folds=args.folds),
        promote=PromoteSettings(gate=gate_settings(args)))  # the shipped gate unless --gate changes it
    store = LabelStore(workdir / "labels.db", store_prompts=False)
    priors = np.nanmean(S[traffic], axis=0)
    baseline = StrongestRouter.from_priors(experts, priors.tolist(), X.shape[1])
    promoter = ArtifactPromoter(workdir / "artifacts", experts, {"name": "all-MiniLM-L6-v2", "dim": X.shape[1]},
                                baseline)
    clock = [0.0]
    loop = LearningLoop(settings, store, experts, norm_cost, args.cost_weight, promoter, clock=lambda: clock[0])
    policy = ShadowPolicy(len(experts), norm_cost, policy_mode, args.max_experts, warmup=args.warmup,
                          rate=args.rate, seed=seed, explore=args.explore)
    budget = ShadowBudget(settings.shadow.max_share, settings.shadow.usd_per_day, clock=lambda: clock[0])
    judge_call = NoisyJudge(G, flip, noise, seed)
    regrade = args.regrade if regrade is None else regrade
    regrades = 0
    curve = [{"prompts": 0, "labelled": 0, "shadow_usd": 0.0, "live_usd": 0.0, "share": 0.0,
              "gap_closed": measure.gap(promoter.live_scores(X[held])), "promotion": 0}]
    candidates, promotions = [], 0
    for t, i in enumerate(traffic, 1):
        clock[0] = float(t)
        live = int(rank_experts(promoter.live_scores(X[i:i + 1])[0], norm_cost, args.cost_weight).order[0])
        budget.add_live(C[i, live])
        if rng.random() >= settings.shadow.sample:
            continue
        value, local = policy.assess(loop.candidate, X[i], args.optimism) if policy_mode == "value" else (None, None)
        plan = policy.plan(live, value, local if args.local else None)
        if not plan:
            continue
        est = float(sum(C[i, e] for e in plan if e != live) + sum(grade_cost[i, e] for e in plan))
        if not budget.reserve(est):
            policy.budget_feedback(refused=True, plenty=False)
            continue
        policy.budget_feedback(refused=False, plenty=budget.available() > 3 * est)
        scores = {e: judge_call(i, e) for e in plan}
        if regrade > 0:  # ask the judge again where its grade surprises the candidate (learning.regrade)
            expected = predicted_grades(loop.candidate, X[i], policy.sums, policy.counts)
            for e in surprising(expected, scores, args.surprise):
                extra = regrade * float(grade_cost[i, e])
                if not budget.reserve(extra):
                    break
                calls = [scores[e]]
                while len(calls) <= regrade and not settled(calls):
                    calls.append(judge_call(i, e))
                budget.settle(extra, (len(calls) - 1) * float(grade_cost[i, e]))
                regrades += len(calls) - 1
                scores[e] = combine(calls)
        grades = [Grade(experts[e], s, f"judge:{args.judge}", float(grade_cost[i, e])) for e, s in scores.items()]
        store.add(prompt_digest(table.prompts[i]), X[i], grades, live_expert=experts[live], ts=clock[0],
                  answer_costs={experts[e]: (0.0 if e == live else float(C[i, e])) for e in plan})
        budget.settle(est, est)
        policy.observe(scores)
        loop.labels_added(1)
        if loop.due():
            out = loop.retrain()
            cand_gap = measure.gap(out.router.predict_scores(X[held])) if out.router is not None else None
            candidates.append({"prompts": t, "labelled": out.labelled, "gap_closed": cand_gap,
                               "gate": out.gate.as_dict(), "promoted": bool(out.promoted)})
            if out.promoted:
                promotions += 1
                curve.append({"prompts": t, "labelled": out.labelled, "shadow_usd": budget.shadow_usd,
                              "live_usd": budget.live_usd, "share": budget.share(),
                              "gap_closed": measure.gap(promoter.live_scores(X[held])), "promotion": promotions})
                log(f"seed {seed} {policy_mode} flip={flip}: promotion {promotions} after {t} prompts, {out.labelled} labelled, "
                    f"share {budget.share():.3f}, gap closed {curve[-1]['gap_closed']:.3f}")
    store.close()
    final = {"prompts": len(traffic), "labelled": store_count(workdir), "shadow_usd": budget.shadow_usd,
             "live_usd": budget.live_usd, "share": budget.share(),
             "gap_closed": measure.gap(promoter.live_scores(X[held])), "promotions": promotions,
             "grades": int(policy.counts.sum()), "extra_judge_calls": regrades,
             "grades_per_expert": dict(zip(experts, policy.counts.astype(int).tolist()))}
    return {"seed": seed, "policy": policy_mode, "flip": flip, "shuffled": shuffle, "noise": noise,
            "regrade": regrade, "curve": curve,
            "candidates": candidates, "final": final}


def gate_settings(args) -> GateSettings:
    """The shipped gate with the keys ``--gate`` names changed (validated like experts.yaml's)."""
    return GateSettings(**json.loads(args.gate))


def store_count(workdir: Path) -> int:
    store = LabelStore(workdir / "labels.db")
    try:
        return store.counts()["prompts"]
    finally:
        store.close()


def full_table_reference(table: RoutingTable, X: np.ndarray, args) -> dict:
    """knn trained on every traffic prompt with all models' scores (the target's yardstick)."""
    from routers.knn import KNNRouter
    held = table.folds == args.held_fold
    measure = Measure(table.scores[held], table.costs[held], list(table.models))
    out = {}
    for k in (20, 40, 80):
        router = KNNRouter(k=k).fit(X[~held], table.scores[~held])
        out[f"knn k={k}"] = measure.gap(router.predict_scores(X[held]))
    return out


def plot(results: list[dict], reference: float, path: Path) -> None:
    """Left: live gap closed after each promotion vs shadow spend / live spend (the budget keeps
    the share near its cap, so the points stack near it). Right: the same against prompts served,
    with every candidate's gap closed (promoted or not) as dots."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for r in results:
        label = f"{r['policy']}, flip {r['flip']:.0%}"
        xs = [p["share"] or 0.0 for p in r["curve"]] + [r["final"]["share"] or 0.0]
        ys = [p["gap_closed"] for p in r["curve"]] + [r["final"]["gap_closed"]]
        line = left.step(xs, ys, where="post", marker="o", ms=3, label=label)[0]
        ts = [p["prompts"] for p in r["curve"]] + [r["final"]["prompts"]]
        right.step(ts, ys, where="post", color=line.get_color(), label=f"{label}: live")
        cand = [(c["prompts"], c["gap_closed"]) for c in r["candidates"] if c["gap_closed"] is not None]
        if cand:
            right.plot(*zip(*cand), ".", color=line.get_color(), alpha=0.5)
    for ax in (left, right):
        ax.axhline(reference, color="grey", ls="--", lw=1, label="full-table knn (same fold)")
        ax.axhline(0.8 * reference, color="grey", ls=":", lw=1, label="0.8 x full-table knn")
        ax.axhline(0.253, color="black", ls="-.", lw=0.8, label="issue target 0.253")
    left.axvline(0.25, color="red", ls=":", lw=1, label="25% of live spend")
    left.set_xlabel("cumulative shadow spend / cumulative live spend")
    right.set_xlabel("prompts served (dots: every candidate, promoted or not)")
    left.set_ylabel("live router's gap closed (held-out fold)")
    left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_name(r: dict) -> str:
    name = f"{r['policy']}, {r['flip']:.0%} grades flipped"
    if r["flip"] > 0:
        name += " per call" if r.get("noise", "independent") == "independent" else " per (prompt, expert)"
    if r.get("regrade", 0):
        name += ", re-graded"
    return name + (", labels shuffled (control)" if r["shuffled"] else "")


def summary_rows(runs: list[dict]) -> list[str]:
    """Per kind of run over the seeds: mean and worst final gap closed, spend share, promotions."""
    kinds = list(dict.fromkeys(run_name(r) for r in runs))
    lines = ["| run | gap closed, mean | worst seed | shadow / live spend, mean (max) | promotions per seed |",
             "| --- | --- | --- | --- | --- |"]
    for kind in kinds:
        rs = [r for r in runs if run_name(r) == kind]
        gaps = [r["final"]["gap_closed"] for r in rs]
        shares = [r["final"]["share"] or 0.0 for r in rs]
        worst = min(rs, key=lambda r: r["final"]["gap_closed"])
        lines.append(f"| {kind} | {np.mean(gaps):.3f} | {min(gaps):.3f} (seed {worst['seed']}) | "
                     f"{np.mean(shares):.3f} ({max(shares):.3f}) | "
                     + ", ".join(str(r["final"]["promotions"]) for r in rs) + " |")
    return lines


def noise_loss(runs: list[dict], kind: str) -> tuple[list[str], list[float]]:
    """Per seed: how much of the clean value run's gap closed the noisy run ``kind`` loses."""
    clean = {r["seed"]: r for r in runs if r["policy"] == "value" and r["flip"] == 0 and not r["shuffled"]}
    losses, parts = [], []
    for r in runs:
        if run_name(r) == kind and r["seed"] in clean:
            c = clean[r["seed"]]["final"]["gap_closed"]
            losses.append(1.0 - r["final"]["gap_closed"] / c if c > 0 else float("nan"))
            parts.append(f"seed {r['seed']} {losses[-1]:+.0%}")
    return parts, losses


def null_z_lines(out: dict) -> list[str]:
    """The gate's permutation statistic (the candidate's lead over its shuffled-label controls, in
    their sd) over every retrain the gate judged, per kind of run: how far a shuffled run gets."""
    need, limit = out["gate"]["min_rows"], out["gate"]["null_z"]
    lines = []
    for kind in dict.fromkeys(run_name(r) for r in out["runs"]):
        z = np.array([c["gate"]["null_z"] for r in out["runs"] if run_name(r) == kind for c in r["candidates"]
                      if c["gate"]["rows"] >= need and c["gate"].get("null_z") == c["gate"].get("null_z")])
        if len(z):
            lines.append(f"- {kind}: {len(z)} retrains, max {z.max():+.2f} sd, {int((z > limit).sum())} above "
                         f"null_z {limit}")
    return lines


def markdown(out: dict) -> str:
    """The report page: the protocol, the figures over seeds, per seed, and the first seed's promotions."""
    ref = out["full_table_knn"]
    a = out["args"]
    runs = out["runs"]
    first = runs[0]["seed"]
    gate = ", ".join(f"{k} {v}" for k, v in out["gate"].items())
    lines = [f"# Learning loop replay: `{out['table']}`", "",
             f"Command: `python -m eval.learning_sim` (seeds {a['seeds']}, held-out fold {a['held_fold']}, judge "
             f"{a['judge']}, profile cost weight {a['cost_weight']}, candidate {a['router']} {a['params']}, "
             f"retrain every {a['every']} labelled prompts, shadow cap {a['max_share']:.0%} of live spend). "
             f"The gate is {'the shipped default' if a.get('gate', '{}') == '{}' else 'changed by --gate'} "
             f"(learning.promote.gate: {gate}). Traffic: the other four folds "
             "once, in a seeded random order per seed, starting on `strongest`.", "",
             "Full-table knn on the same held-out fold (all traffic prompts, all models): "
             + ", ".join(f"{k} {v:.3f}" for k, v in ref.items()) + ".", "",
             "Over the seeds (final live router):", ""] + summary_rows(runs)
    for kind in dict.fromkeys(run_name(r) for r in runs if r["policy"] == "value" and r["flip"] > 0):
        parts, losses = noise_loss(runs, kind)
        if losses:
            lines += ["", f"Gap closed lost by `{kind}` against the clean value run: mean {np.nanmean(losses):+.0%}, "
                      f"worst {np.nanmax(losses):+.0%} ({', '.join(parts)})."]
    lines += ["", f"Re-grading (`--regrade {a.get('regrade')}` extra judge calls where a grade lies more than "
              f"{a.get('surprise')} from the candidate's prediction, median kept, every call priced in the shadow "
              "budget): extra judge calls per seed: " + "; ".join(
                  f"{run_name(r)} seed {r['seed']} {r['final'].get('extra_judge_calls', 0)}" for r in runs
                  if r["seed"] == first) + ".", ""]
    lines += ([""] if lines[-1] else []) + ["The gate's permutation statistic over the retrains it judged (all seeds):",
                                            ""] + null_z_lines(out)
    lines += ["", "Per seed:", "", "| seed | run | live router's gap closed (final) | best candidate's gap closed | "
              "shadow / live spend | labelled prompts | grades | promotions | first promotion at labelled |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        f = r["final"]
        best = max([c["gap_closed"] or 0.0 for c in r["candidates"]] or [0.0])
        at = next((p["labelled"] for p in r["curve"][1:]), "-")
        lines.append(f"| {r['seed']} | {run_name(r)} | {f['gap_closed']:.3f} | {best:.3f} | {f['share']:.3f} | "
                     f"{f['labelled']} | {f['grades']} | {f['promotions']} | {at} |")
    lines += ["", f"Each promotion of seed {first} (cumulative, at the moment of the promotion):", "",
              "| run | after prompts | labelled | shadow / live spend | live gap closed |", "| --- | --- | --- | --- | --- |"]
    for r in (r for r in runs if r["seed"] == first):
        for p in r["curve"][1:]:
            lines.append(f"| {run_name(r)} | {p['prompts']} | {p['labelled']} | {p['share']:.3f} | {p['gap_closed']:.3f} |")
    lines += ["", f"Grades per expert (seed {first}, value policy, clean grades): "
              + ", ".join(f"{k} {v}" for k, v in runs[0]["final"]["grades_per_expert"].items()), "",
              f"![learning curve, seed {first}](learning.png)", ""]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", default="../shared/data/bench/llmrouter.csv")
    p.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9", help="one pass per seed (traffic order, flips, policy draws)")
    p.add_argument("--held-fold", type=int, default=0)
    p.add_argument("--runs", default="value:0,value:0.1,random:0,shuffled,value:0.1:regrade,value:0.1:persistent:regrade",
                   help="policy:flip[:persistent][:regrade] per run (persistent: a flip repeats on every judge call "
                        "of that prompt and expert; regrade: surprising grades are asked again); 'shuffled': the "
                        "value policy on shuffled grades (the gate's control)")
    p.add_argument("--regrade", type=int, default=2, help="extra judge calls for a surprising grade, in runs "
                   "marked 'regrade' (learning.grader.judge.regrade)")
    p.add_argument("--surprise", type=float, default=0.5,
                   help="a grade is surprising when it lies farther than this from the candidate's prediction")
    p.add_argument("--gate", default="{}", help='learning.promote.gate keys that differ from the shipped '
                   'default, as JSON (e.g. \'{"confirm": 1}\')')
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (same results)")
    p.add_argument("--judge", default="gemma-2-9b-it", help="the judge expert (its price is charged per grade)")
    p.add_argument("--cost-weight", type=float, default=0.0, help="the profile's cost weight")
    p.add_argument("--sample", type=float, default=1.0)
    p.add_argument("--max-share", type=float, default=0.25)
    p.add_argument("--max-experts", type=int, default=ShadowSettings().max_experts,
                   help="learning.shadow.max_experts (0: no cap, the shipped default)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--rate", type=float, default=0.3)
    p.add_argument("--explore", type=float, default=ShadowSettings().explore,
                   help="value policy: share of prompts shadowed whatever their value (learning.shadow.explore)")
    p.add_argument("--optimism", type=float, default=1.0)
    p.add_argument("--local", type=int, default=1, help="1: also label experts that could be chosen on the prompt")
    p.add_argument("--router", default="knn")
    p.add_argument("--params", default=json.dumps(RetrainSettings().params),
                   help="the candidate's hyperparameters (default: the shipped learning.retrain.params)")
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--min-labels", type=int, default=50)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--out", default=None, help="folder for learning.json / learning.md / learning.png")
    return p.parse_args(argv)


def parse_runs(spec: str) -> list[tuple[str, float, bool, str, bool]]:
    """(policy, flip, shuffled, noise, regrade on) per run."""
    runs = []
    for item in spec.split(","):
        if item == "shuffled":
            runs.append(("value", 0.0, True, "independent", False))
        else:
            mode, flip, *opts = item.split(":")
            runs.append((mode, float(flip), False, "persistent" if "persistent" in opts else "independent",
                         "regrade" in opts))
    return runs


def one_run(job) -> dict:
    table, X, prices, args, seed, (mode, flip, shuffle, noise, regrade) = job
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        r = simulate(table, X, prices, args, mode, flip, Path(tmp), shuffle, seed, noise,
                     args.regrade if regrade else 0)
        r["seconds"] = round(time.time() - t0, 1)
    f = r["final"]
    log(f"seed {seed} {run_name(r)}: final gap closed {f['gap_closed']:.3f}, share {f['share']:.3f}, "
        f"{f['labelled']} prompts labelled, {f['promotions']} promotions, {f['extra_judge_calls']} extra judge "
        f"calls ({r['seconds']} s)")
    return r


def main(argv=None) -> int:
    from eval.harness import embed_table
    from eval.tables import load_eval_table

    args = parse_args(argv)
    table = load_eval_table(args.table)
    X = embed_table(table)
    prices = read_prices(table, Path(args.table).with_suffix(".models.csv"))
    reference = full_table_reference(table, X, args)
    log(f"full-table reference: {', '.join(f'{k} {v:.3f}' for k, v in reference.items())}")
    jobs = [(table, X, prices, args, seed, run) for seed in (int(x) for x in args.seeds.split(","))
            for run in parse_runs(args.runs)]
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(one_run, jobs))
    else:
        results = [one_run(job) for job in jobs]
    # the output folder is recorded relative to the working directory: no path of the machine in reports
    recorded = {**vars(args), "out": _relative(args.out)}
    out = {"table": table.name, "args": recorded, "gate": gate_settings(args).model_dump(),
           "full_table_knn": reference, "runs": results}
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "learning.json").write_text(json.dumps(out, indent=2) + "\n")
        plot([r for r in results if not r["shuffled"] and r["seed"] == results[0]["seed"]], reference["knn k=80"],
             folder / "learning.png")
        (folder / "learning.md").write_text(markdown(out))
    print(markdown(out))
    return 0


def _relative(path: str | None) -> str | None:
    if not path:
        return path
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return Path(path).name  # outside the working directory: its name only


if __name__ == "__main__":
    sys.exit(main())

