"""Scenarios beyond the static split: onboarding held-back experts, and online replay.

onboarding: the cluster router (UniRoute) is trained on a subset of the models; the held-back models
are then added with ``add_expert`` from a small probe share of the training prompts (their true scores
on those probes only), without refitting the clusters. Its out-of-fold auc is compared with the same
router trained on every model, fold by fold on the same splits.

online: the table is replayed as a stream in a seeded order; a learner sees only the score of the
expert it chose (bandit feedback). The bandit chooses with its own exploration and learns with
``partial_fit``; the RL policy acts greedily (uniformly at random before its first training) and is
retrained every ``retrain_every`` requests from its own logged stream. Reported: cumulative reward,
regret against the best fixed expert in hindsight, and the off-policy estimates (IPS, SNIPS, DR) of
candidate routers computed from the bandit's logged stream against their true replayed value.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from eval import metrics as M
from eval.harness import build_router, fold_ids, log
from routers.data import RoutingTable
from routers.policy import choose_batch
from routers.registry import available_routers


# -- onboarding ----------------------------------------------------------------------------------
def held_back_models(models: list[str], seed: int, n_held: int | None = None) -> list[str]:
    """A seeded choice of a third of the models (at least one, leaving at least one)."""
    n_held = n_held or max(1, len(models) // 3)
    n_held = min(n_held, len(models) - 1)
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(models, size=n_held, replace=False).tolist(), key=models.index)


def run_onboarding(table: RoutingTable, X: np.ndarray, seed: int = 0, n_folds: int = 5,
                   probe_share: float = 0.05, router: str = "cluster", n_held: int | None = None,
                   params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Cross-validated auc of ``router`` trained on all models vs trained on a subset + onboarded."""
    held = held_back_models(table.models, seed, n_held)
    kept = [m for m in table.models if m not in held]
    kept_idx = [table.models.index(m) for m in kept]
    folds = fold_ids(table, n_folds, seed)
    rng = np.random.default_rng(seed)
    full = np.full(table.scores.shape, np.nan)
    onboarded = np.full(table.scores.shape, np.nan)
    n_probes = []
    log(f"onboarding: {router} trained on {len(kept)} models, onboarding {held} from "
        f"{probe_share:.0%} of training prompts")
    for f in np.unique(folds):
        test, train = folds == f, np.flatnonzero(folds != f)
        r_all = build_router(router, seed, params)
        r_all.fit(X[train], table.scores[train], cost=table.costs[train], experts=table.models)
        full[test] = r_all.predict_scores(X[test])
        r_sub = build_router(router, seed, params)
        r_sub.fit(X[train][:, :], table.scores[np.ix_(train, kept_idx)],
                  cost=table.costs[np.ix_(train, kept_idx)], experts=kept)
        probes = np.sort(rng.choice(train, size=max(1, int(probe_share * len(train))), replace=False))
        n_probes.append(len(probes))
        for m in held:
            r_sub.add_expert(m, X[probes], table.scores[probes, table.models.index(m)])
        order = [r_sub.experts_.index(m) for m in table.models]
        onboarded[test] = r_sub.predict_scores(X[test])[:, order]
        log(f"  fold {f}: {len(probes)} probes")
    base = M.baselines(table.scores, table.costs, table.models)
    grid = M.cost_weight_grid(table.costs)
    single = M.single_model_frontier(base)
    oracle, _, _ = M.oracle(table.scores, table.costs, base, grid)
    res = {}
    for name, pred in (("trained_on_all", full), ("onboarded", onboarded)):
        m, _, _ = M.evaluate_scores(pred, table.scores, table.costs, base, grid, oracle["auc"], single["auc"])
        res[name] = {k: _r(v) for k, v in m.items()}
    kept_only = _kept_only_auc(table, full, kept_idx, base, grid)
    return {
        "scenario": "onboarding", "table": table.name, "n_prompts": len(table), "router": router,
        "models": list(table.models), "kept": kept, "held_back": held, "probe_share": probe_share,
        "probes_per_fold": n_probes, "results": res,
        "auc_ratio": _r(res["onboarded"]["auc"] / res["trained_on_all"]["auc"]),
        "auc_kept_models_only": _r(kept_only),
        "baselines": {"single_model_frontier_auc": _r(single["auc"]), "oracle_auc": _r(oracle["auc"])},
    }


def _kept_only_auc(table, pred, kept_idx, base, grid) -> float:
    """auc when the held-back models are simply unavailable (the router never picks them)."""
    masked = np.full(pred.shape, -np.inf)
    masked[:, kept_idx] = pred[:, kept_idx]
    front, _ = M.sweep(masked, table.scores, table.costs, grid)
    return M.auc(front.cost, front.quality, base.c_min, base.c_max)


def _r(v: Any) -> Any:
    return None if v is None else round(float(v), 6)


# -- online --------------------------------------------------------------------------------------
def _evaluate_policy(rewards, props, actions, target_probs, q_hat):
    """routers.ope's IPS / SNIPS / DR (with 95% CIs) when present, else the textbook point estimates."""
    try:
        from routers.ope import evaluate_policy
    except ImportError:
        rows = np.arange(len(actions))
        w = target_probs[rows, actions] / props
        return {"ips": {"value": float(np.mean(w * rewards))},
                "snips": {"value": float(np.sum(w * rewards) / max(np.sum(w), 1e-12))},
                "dr": {"value": float(np.mean((target_probs * q_hat).sum(axis=1)
                                              + w * (rewards - q_hat[rows, actions])))}}
    return {k: v.as_dict() for k, v in evaluate_policy(rewards, props, actions, target_probs, q_hat).items()}


def run_online(table: RoutingTable, X: np.ndarray, seed: int = 0, cost_weight: float = 0.1,
               n_warm: int = 100, batch: int = 50, retrain_every: int = 1000,
               learners: tuple[str, ...] = ("bandit", "policy")) -> dict[str, Any]:
    """Replay the table as a stream with bandit feedback; see the module docstring."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(table))
    Xs, S = X[order], table.scores[order]
    C = table.costs[order] / float(np.nanmean(table.costs, axis=0).max())  # cost in units of the dearest model
    R = S - cost_weight * C  # the cost-aware reward of every (prompt, expert), hidden but for the chosen one
    k, n = len(table.models), len(table)
    fixed = R.mean(axis=0)
    best_fixed = int(np.argmax(fixed))
    out: dict[str, Any] = {
        "scenario": "online", "table": table.name, "n_prompts": n, "models": list(table.models), "seed": seed,
        "reward": f"quality - {cost_weight} x cost / mean cost of the dearest model",
        "best_fixed_expert": {"model": table.models[best_fixed], "mean_reward": _r(fixed[best_fixed])},
        "oracle_mean_reward": _r(R.max(axis=1).mean()), "learners": {}, "ope": {},
    }
    logs = {}
    for name in learners:
        if name not in available_routers():
            out["learners"][name] = {"error": f"router {name!r} is not registered"}
            continue
        try:
            log(f"online: replaying {n} requests through {name}")
            actions, props = (_replay_bandit if name == "bandit" else _replay_policy)(
                name, Xs, S, C, R, table.models, seed, cost_weight, n_warm, batch, retrain_every)
        except Exception as exc:  # reported, not fatal
            out["learners"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"  {name}: FAILED ({exc})")
            continue
        got = R[np.arange(n), actions]
        cum = np.cumsum(got)
        regret = np.cumsum(R[:, best_fixed]) - cum
        marks = np.unique(np.linspace(0, n - 1, 11).astype(int))
        out["learners"][name] = {
            "mean_reward": _r(got.mean()), "cumulative_reward": _r(cum[-1]),
            "mean_quality": _r(S[np.arange(n), actions].mean()), "mean_cost": _r(C[np.arange(n), actions].mean()),
            "regret_vs_best_fixed": _r(regret[-1]),
            "regret_curve": {str(int(t) + 1): _r(regret[t]) for t in marks},
            "last_half_mean_reward": _r(got[n // 2:].mean()),
            "choice_share": {m: _r(np.mean(actions == j)) for j, m in enumerate(table.models)},
        }
        logs[name] = (actions, props)
    if "bandit" in logs:
        out["ope"] = _off_policy(Xs, S, C, R, table.models, logs["bandit"], seed, cost_weight)
    return out


def _replay_bandit(name, Xs, S, C, R, models, seed, cost_weight, n_warm, batch, retrain_every):
    n, k = R.shape
    rng = np.random.default_rng(seed + 1)
    actions, props = np.empty(n, dtype=np.int64), np.empty(n)
    actions[:n_warm], props[:n_warm] = rng.integers(0, k, n_warm), 1.0 / k  # uniform warm-up
    Y0 = np.full((n_warm, k), np.nan)
    Y0[np.arange(n_warm), actions[:n_warm]] = S[np.arange(n_warm), actions[:n_warm]]
    router = build_router(name, seed).fit(Xs[:n_warm], Y0, experts=models)
    pending = []
    for t in range(n_warm, n):
        a, p = router.choose(Xs[t:t + 1], f"{seed}-{t}", cost=C[t], cost_weight=cost_weight)
        actions[t], props[t] = a, p
        pending.append(t)
        if len(pending) >= batch:
            idx = np.asarray(pending)
            router.partial_fit(Xs[idx], actions[idx], S[idx, actions[idx]], props[idx])
            pending = []
    return actions, props


def _replay_policy(name, Xs, S, C, R, models, seed, cost_weight, n_warm, batch, retrain_every):
    """Uniform until the first training, then sampling from the policy (with its propensities);
    retrained from scratch on its whole logged stream every ``retrain_every`` requests."""
    n, k = R.shape
    rng = np.random.default_rng(seed + 2)
    actions, props = np.empty(n, dtype=np.int64), np.empty(n)
    router = None
    start = 0
    while start < n:
        end = min(n, start + (retrain_every if router is not None else max(n_warm, 1)))
        if router is None:
            actions[start:end], props[start:end] = rng.integers(0, k, end - start), 1.0 / k
        elif router.chooses:
            for t in range(start, end):
                actions[t], props[t] = router.choose(Xs[t:t + 1], f"{seed}-{t}", cost=C[t], cost_weight=cost_weight)
        else:
            actions[start:end] = choose_batch(router.predict_scores(Xs[start:end]), C[start:end], cost_weight)
            props[start:end] = 1.0
        router = _train_from_log(name, Xs[:end], S, actions[:end], props[:end], models, seed)
        start = end
    return actions, props


def _train_from_log(name, X, S, actions, props, models, seed):
    """Fit a router from a logged stream: ``fit_logged`` when it declares one, else partial labels."""
    router = build_router(name, seed)
    rewards = S[np.arange(len(actions)), actions]
    if router.learns_from_logs:
        return router.fit_logged(X, actions, rewards, props, experts=models)
    Y = np.full((len(actions), len(models)), np.nan)
    Y[np.arange(len(actions)), actions] = rewards
    return router.fit(X, Y, experts=models)


def _target_probs(router, X, C, cost_weight) -> np.ndarray:
    """The action distribution (n, k) of a trained router: its own when it declares one, else greedy."""
    if router.gives_probabilities:
        return np.asarray(router.action_probabilities(X, C, cost_weight), dtype=np.float64)
    choice = choose_batch(router.predict_scores(X), C, cost_weight)
    probs = np.zeros(C.shape)
    probs[np.arange(len(choice)), choice] = 1.0
    return probs


def _off_policy(Xs, S, C, R, models, logged, seed, cost_weight) -> dict[str, Any]:
    """OPE from the bandit's logged stream vs each target's true replayed value.

    Targets: every fixed expert (on the whole log), and routers trained on the first half of the
    log (the RL policy with its importance weighting, kNN and cluster on partial labels), evaluated
    on the second half. The reward model for DR is the per-expert mean logged reward of the first half.
    """
    actions, props = logged
    n, k = R.shape
    half = n // 2
    rewards = R[np.arange(n), actions]
    q_mean = np.array([rewards[:half][actions[:half] == j].mean() if np.any(actions[:half] == j) else 0.0
                       for j in range(k)])
    targets: dict[str, tuple[np.ndarray, slice]] = {}
    for j, m in enumerate(models):
        probs = np.zeros((n, k))
        probs[:, j] = 1.0
        targets[f"fixed:{m}"] = (probs, slice(0, n))
    for cand in ("policy", "knn", "cluster"):
        if cand in available_routers():
            try:
                r = _train_from_log(cand, Xs[:half], S, actions[:half], props[:half], models, seed)
                targets[f"{cand} (trained on 1st half of log)"] = (
                    _target_probs(r, Xs[half:], C[half:], cost_weight), slice(half, n))
            except Exception as exc:  # noqa: BLE001 - reported in the log, the others go on
                log(f"  ope target {cand} failed: {exc}")
    res = {}
    for name, (probs, ev) in targets.items():
        a, r, p = actions[ev], rewards[ev], props[ev]
        true = float(np.mean((probs * R[ev]).sum(axis=1)))  # its expected reward on these prompts
        est = _evaluate_policy(r, p, a, probs, np.tile(q_mean, (len(a), 1)))
        res[name] = {"true": _r(true), **{k: {kk: _r(vv) for kk, vv in v.items()} for k, v in est.items()}}
    return {"logged_by": "bandit", "estimates": res}


# -- markdown ------------------------------------------------------------------------------------
def scenario_markdown(result: dict[str, Any]) -> str:
    if result["scenario"] == "cascade":
        from eval.cascade import cascade_markdown
        return cascade_markdown(result)
    if result["scenario"] == "onboarding":
        res = result["results"]
        return (f"# Onboarding: `{result['table']}`\n\n{result['router']} trained on {len(result['kept'])} models, "
                f"{', '.join(result['held_back'])} onboarded from {result['probe_share']:.0%} of the training "
                f"prompts as probes (per fold: {result['probes_per_fold']}).\n\n"
                "| variant | auc | gap closed | max quality | cost to match best |\n| --- | --- | --- | --- | --- |\n"
                + "".join(f"| {k} | {v['auc']} | {v.get('gap_closed')} | {v['max_quality']} | "
                          f"{v['cost_to_match_best']} |\n" for k, v in res.items())
                + f"| kept models only (held-back never picked) | {result['auc_kept_models_only']} | | | |\n\n"
                f"auc ratio onboarded / trained on all: **{result['auc_ratio']}**; single-model frontier auc "
                f"{result['baselines']['single_model_frontier_auc']}, oracle {result['baselines']['oracle_auc']}.\n")
    lines = [f"# Online replay: `{result['table']}`\n",
             f"{result['n_prompts']} requests in a seeded order; reward = {result['reward']}. Best fixed expert "
             f"{result['best_fixed_expert']['model']} (mean reward {result['best_fixed_expert']['mean_reward']}); "
             f"oracle {result['oracle_mean_reward']}.\n",
             "| learner | mean reward | last-half mean reward | mean quality | regret vs best fixed |",
             "| --- | --- | --- | --- | --- |"]
    for name, v in result["learners"].items():
        if "error" in v:
            lines.append(f"| {name} | error: {v['error']} | | | |")
        else:
            lines.append(f"| {name} | {v['mean_reward']} | {v['last_half_mean_reward']} | {v['mean_quality']} | "
                         f"{v['regret_vs_best_fixed']} |")
    if result.get("ope"):
        lines += ["", "Off-policy estimates (95% CI) from the bandit's logged stream vs the true replayed value:", "",
                  "| target policy | true | ips | snips | dr |", "| --- | --- | --- | --- | --- |"]
        for name, e in result["ope"]["estimates"].items():
            cells = []
            for key in ("ips", "snips", "dr"):
                v = e.get(key) or {}
                ci = f" [{v['lo']}, {v['hi']}]" if v.get("lo") is not None else ""
                cells.append(f"{v.get('value')}{ci}")
            lines.append(f"| {name} | {e['true']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
