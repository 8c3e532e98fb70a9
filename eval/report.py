"""Human-readable output of an eval run: frontier plot, per-task picks, a Markdown page."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from eval import metrics as M
from eval.harness import RouterResult, TableReport

METRIC_COLUMNS = [("auc", "auc"), ("gap_closed", "gap closed"), ("max_quality", "max quality"),
                  ("quality_at_best_cost", "quality @ best cost"), ("cost_to_match_best", "cost to match best"),
                  ("aiq", "hull AIQ"), ("route_ms", "route ms")]
TWO_MODEL_COLUMNS = [("apgr", "APGR"), ("cpt50", "CPT(50%)"), ("cpt80", "CPT(80%)")]


def write_json(report: TableReport, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n")


def write_report(report: TableReport, out: str | Path) -> Path:
    """frontier.png, picks.md and report.md under ``out``; returns the report path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_frontiers(report, out / "frontier.png")
    picks = picks_table(report)
    (out / "picks.md").write_text(picks)
    page = out / "report.md"
    page.write_text(markdown_page(report, picks))
    return page


# -- plot ----------------------------------------------------------------------------------------
def _step_xy(front: M.Frontier) -> tuple[np.ndarray, np.ndarray]:
    """The frontier's non-dominated points (cost up, quality up) for a step plot."""
    order = np.lexsort((-front.quality, front.cost))
    c, q = front.cost[order], front.quality[order]
    keep = np.concatenate([[True], q[1:] > np.maximum.accumulate(q)[:-1]])
    return c[keep], q[keep]


def plot_frontiers(report: TableReport, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = report.base
    fig, ax = plt.subplots(figsize=(11, 6), dpi=100)
    ax.axvspan(base.c_min, base.c_max, color="0.94", zorder=0, label="auc cost range")
    ok = [r for r in report.routers.values() if r.frontier is not None]
    ok.sort(key=lambda r: -r.metrics["auc"])
    cmap = plt.get_cmap("tab10" if len(ok) <= 10 else "tab20")
    for i, r in enumerate(ok):
        x, y = _extend(*_step_xy(r.frontier), base.c_max)
        ax.step(x, y, where="post", color=cmap(i % cmap.N), lw=1.8, marker="o", markersize=3, markevery=_marks(x),
                label=f"{r.name} (auc {r.metrics['auc']:.3f})")
    x, y = _extend(*_step_xy(report.oracle.frontier), base.c_max)
    ax.step(x, y, where="post", color="black", lw=1.5, ls="--",
            label=f"oracle (auc {report.oracle.metrics['auc']:.3f})")
    x, y = _step_xy(report.oracle.frontier)
    ax.scatter(x[-1:], y[-1:], marker="*", s=160, color="black", zorder=5)
    hx, hy = M.upper_hull(base.model_cost, base.model_quality)
    ax.plot(hx, hy, color="0.45", lw=1.2, ls=":",
            label=f"random mixes of models (auc {report.single['random_mix_auc']:.3f})")
    ax.scatter(base.model_cost, base.model_quality, color="0.2", marker="o", s=30, zorder=4,
               label=f"single models (frontier auc {report.single['auc']:.3f})")
    for i, name in enumerate(base.models):
        ax.annotate(_short(name), (base.model_cost[i], base.model_quality[i]), fontsize=7,
                    xytext=(4, -9 if i % 2 else 3), textcoords="offset points", color="0.25")
    ax.set_xscale("log")
    ax.margins(x=0.15)  # room for the labels of the dearest models
    ax.set_xlabel("mean cost per prompt (USD, log scale)")
    ax.set_ylabel("mean quality")
    ax.set_title(f"{report.table.name}: cost-quality frontiers ({len(report.table)} prompts, "
                 f"{report.folds}-fold out-of-fold)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _extend(x: np.ndarray, y: np.ndarray, c_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Carry the step's last value to c_max: q(c) holds beyond the dearest point."""
    if x[-1] < c_max:
        return np.append(x, c_max), np.append(y, y[-1])
    return x, y


def _marks(x: np.ndarray) -> list[int]:
    """Mark the real operating points (not the extension), at most ~25 of them."""
    n = len(x) - 1 if len(x) > 1 else 1
    return list(range(0, n, max(1, n // 25)))


def _short(name: str, width: int = 28) -> str:
    name = name.split("/")[-1]
    return name if len(name) <= width else name[: width - 1] + "…"


# -- per-task picks ------------------------------------------------------------------------------
def operating_index(r: RouterResult, base: M.Baselines) -> int:
    """The operating point shown in the picks table: best quality at no more than the best single
    model's cost (the cheapest point if none is that cheap)."""
    f = r.frontier
    ok = np.flatnonzero(f.cost <= base.best_cost * (1 + 1e-12))
    if ok.size == 0:
        return int(np.argmin(f.cost))
    return int(ok[np.lexsort((f.cost[ok], -f.quality[ok]))[0]])


def picks_table(report: TableReport) -> str:
    """Markdown: per task, the expert each router picks most often (and its share)."""
    rs = [report.oracle] + [r for r in report.routers.values() if r.choices is not None]
    tasks = np.asarray(report.table.tasks)
    models = report.table.models
    head = ["task", "n"] + [r.name for r in rs]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    picks = {r.name: r.choices[operating_index(r, report.base)] for r in rs}
    for task in sorted(set(tasks.tolist())):
        rows = tasks == task
        cells = [task or "(none)", str(int(rows.sum()))]
        for r in rs:
            model, count = Counter(picks[r.name][rows].tolist()).most_common(1)[0]
            cells.append(f"{_short(models[model], 22)} {100 * count / rows.sum():.0f}%")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -- page ----------------------------------------------------------------------------------------
def _fmt(value: Any, key: str) -> str:
    if value is None:
        return "-"
    if key == "cost_to_match_best":
        return f"{value:.2f}x"
    if key in ("cpt50", "cpt80"):
        return f"{value:.1f}%"
    if key == "route_ms":
        return f"{value:.3f}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_table(report: TableReport) -> str:
    cols = METRIC_COLUMNS + (TWO_MODEL_COLUMNS if len(report.table.models) == 2 else [])
    lines = ["| router | " + " | ".join(label for _, label in cols) + " |", "|" + " --- |" * (len(cols) + 1)]
    ranked = sorted(report.routers.values(), key=lambda r: -(r.metrics.get("auc") or -1))
    for r in [report.oracle] + ranked:
        if r.error:
            lines.append(f"| {r.name} | error: {r.error} |" + " |" * (len(cols) - 1))
            continue
        name = f"**{r.name}** (bound)" if r is report.oracle else r.name
        lines.append(f"| {name} | " + " | ".join(_fmt(r.metrics.get(k), k) for k, _ in cols) + " |")
    return "\n".join(lines) + "\n"


def markdown_page(report: TableReport, picks: str) -> str:
    base, t = report.base, report.table
    singles = "\n".join(f"| {m} | {base.model_quality[i]:.4f} | {base.model_cost[i]:.3g} |"
                        for i, m in sorted(enumerate(base.models), key=lambda p: base.model_cost[p[0]]))
    return f"""# Routing evaluation: `{t.name}`

{len(t)} prompts{f" (a seeded uniform sample of the table's {report.sample_of}: `--sample {len(t)} --seed {report.seed}`)" if report.sample_of else ""}, {len(t.models)} models, {len(set(t.tasks))} tasks. {report.folds}-fold cross-validation on the
table's `fold` column: every router is fitted on four folds and predicts the fifth, on the same cached
all-MiniLM-L6-v2 embeddings; metrics are computed once on the pooled out-of-fold predictions. Each router's
operating points come from a sweep of the cost weight (0 and {len(report.cost_weights) - 1} log-spaced values):
every prompt goes to argmax(score - cost_weight x cost).

![frontiers](frontier.png)

## Metrics

`auc`: mean over costs in [{base.c_min:.3g}, {base.c_max:.3g}] USD (cheapest to most expensive single model)
of the best quality reachable at that cost. `gap closed`: share of the gap between the single-model frontier
and the oracle that the router closes. `cost to match best`: cost, as a multiple of the best single model's
({t.models[base.best]}), at which the router first reaches its quality. `hull AIQ`: the same area under the
router's upper convex hull.{' APGR / CPT: RouteLLM threshold sweep on the strong-minus-weak score.' if len(t.models) == 2 else ''}

{metrics_table(report)}
Baselines: best single model **{t.models[base.best]}** {base.best_quality:.4f} at {base.best_cost:.3g} USD;
single-model frontier auc **{report.single['auc']:.4f}** (random mixes of models: {report.single['random_mix_auc']:.4f});
oracle auc **{report.oracle.metrics['auc']:.4f}**, oracle best quality {report.oracle.metrics['max_quality']:.4f}.

| single model | quality | mean cost (USD) |
| --- | --- | --- |
{singles}

## Which expert each router picks, per task

At each router's best operating point that costs no more than the best single model: the expert it picks
most often on the task, and the share of the task's prompts it gets.

{picks}
Regenerate: `router-gateway eval <table>.csv --out <dir> --json <dir>/metrics.json`.
"""
