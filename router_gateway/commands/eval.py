"""``router-gateway eval TABLE.csv``: cross-validated routing quality per dollar on a routing table."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="score routers on a routing table (cost-quality frontiers, auc, APGR)",
        description="5-fold cross-validation of routers on a routing table (prompt, fold, task, "
                    "score:<model>, cost:<model>); writes metrics JSON and a report with plots.")
    p.add_argument("table", help="routing table CSV")
    p.add_argument("--routers", default="all", help="'all' or comma-separated router names (default: all)")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5: the table's fold column)")
    p.add_argument("--out", help="directory for report.md, frontier.png and picks.md")
    p.add_argument("--json", help="write metrics JSON here")
    p.add_argument("--scenario", choices=["static", "onboarding", "online", "cascade"],
                   default="static", help="static cross-validation (default), onboarding of held-back experts, "
                                          "online replay, or cascade (needs answer:<model> columns)")
    p.add_argument("--cascade-routers", default="knn",
                   help="cascade scenario: routers whose prompt-level estimates the verifier stacks (default knn)")
    p.add_argument("--seed", type=int, default=0, help="seed for routers, shuffles and streams")
    p.add_argument("--embedder", default="torch", help="embedding backend (default torch: all-MiniLM-L6-v2)")
    p.add_argument("--sample", type=int, help="evaluate a seeded uniform sample of N prompts (big tables, "
                   "slow embedding); folds stay the table's")
    p.add_argument("--pred-cache", metavar="DIR",
                   help="cache each router's out-of-fold predictions here (keyed by data, seed, params and "
                        "router source), so runs for different routers can go in parallel and be assembled")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from eval.harness import embed_table, evaluate, log, resolve_routers
    from eval.tables import load_eval_table, sample_table
    from routers.data import TableError

    try:
        table = load_eval_table(args.table)
        names = resolve_routers(args.routers) if args.scenario in ("static", "cascade") else []
        combine = resolve_routers(args.cascade_routers) if args.scenario == "cascade" else []
    except (OSError, TableError, ValueError) as exc:
        print(f"router-gateway eval: {exc}", file=sys.stderr)
        return 2
    full_size = len(table)
    if args.sample:
        table = sample_table(table, args.sample, args.seed)
        log(f"evaluating a seeded sample of {len(table)} prompts")
    if args.scenario == "cascade" and not _has_answers(args.table):  # before minutes of embedding
        print(f"router-gateway eval: {args.table} has no answer:<model> columns (--scenario cascade needs them)",
              file=sys.stderr)
        return 2
    X = embed_table(table, backend=args.embedder)
    if args.scenario == "onboarding":
        from eval.scenarios import run_onboarding
        result = run_onboarding(table, X, seed=args.seed, n_folds=args.folds)
        return _write_scenario(result, args)
    if args.scenario == "cascade":
        return _run_cascade(table, X, names, combine, args)
    if args.scenario == "online":
        from eval.scenarios import run_online
        result = run_online(table, X, seed=args.seed)
        return _write_scenario(result, args)

    from eval.report import write_json, write_report
    report = evaluate(table, X, names, n_folds=args.folds, seed=args.seed, cache_dir=args.pred_cache)
    if len(table) < full_size:
        report.sample_of = full_size
    if args.json:
        write_json(report, args.json)
        log(f"wrote {args.json}")
    if args.out:
        log(f"wrote {write_report(report, args.out)}")
    from eval.report import metrics_table
    print(metrics_table(report))
    return 0 if any(r.error is None for r in report.routers.values()) or not names else 1


def _has_answers(path: str) -> bool:
    import csv
    with open(path, newline="", encoding="utf-8") as f:
        return any(h.startswith("answer:") for h in next(csv.reader(f), []))


def _run_cascade(table, X, names: list[str], combine: list[str], args: argparse.Namespace) -> int:
    from eval.cascade import load_answers, run_cascade

    answers = load_answers(args.table, table)
    plot = None
    if args.out:
        from pathlib import Path
        Path(args.out).mkdir(parents=True, exist_ok=True)
        plot = Path(args.out) / "cascade_frontier.png"
    rows = plot.with_name("verifier_rows.csv") if plot else None
    result = run_cascade(table, X, answers, names, combine, seed=args.seed, n_folds=args.folds,
                         cache_dir=args.pred_cache, backend=args.embedder, plot_path=plot, rows_path=rows)
    return _write_scenario(result, args)


def _write_scenario(result: dict, args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from eval.scenarios import scenario_markdown

    text = json.dumps(result, indent=2) + "\n"
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{result['scenario']}.md").write_text(scenario_markdown(result))
    print(scenario_markdown(result))
    return 0
