"""Summarise every ``eval/reports/<table>/metrics.json`` into ``eval/reports/README.md``.

Usage: ``python -m eval.summary [eval/reports]``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(v, fmt="{:.3f}"):
    return "-" if v is None else fmt.format(v)


def summary(root: Path) -> str:
    parts = ["# Routing evaluation reports\n",
             "Each folder holds `report.md` (metrics, frontier plot, per-task picks) and `metrics.json`, made by\n"
             "`router-gateway eval ../shared/data/bench/<table>.csv --out eval/reports/<table> "
             "--json eval/reports/<table>/metrics.json` (5-fold CV on the table's fold column, pooled out-of-fold "
             "metrics, issue 5's definitions).\n"]
    for path in sorted(root.glob("*/metrics.json")):
        d = json.loads(path.read_text())
        b = d["baselines"]
        two = len(d["models"]) == 2
        sample = d.get("protocol", {}).get("sample_of")
        parts.append(f"\n## [{d['table']}]({path.parent.name}/report.md): {d['n_prompts']} prompts"
                     + (f" (seeded sample of {sample}, `--sample {d['n_prompts']}`)" if sample else "")
                     + f", {len(d['models'])} models\n")
        extra = [f"[{n}]({path.parent.name}/{n}.md)" for n in ("onboarding", "online", "ceiling")
                 if (path.parent / f"{n}.md").exists()]
        if extra:
            parts.append("Scenarios (`--scenario onboarding|online`) and the task-label ceiling (`python -m eval.ceiling`): " + ", ".join(extra) + ".\n")
        parts.append(f"Best single {b['best_single']['model']} {b['best_single']['quality']:.3f}; single-model "
                     f"frontier auc {b['single_model_frontier']['auc']:.3f}; oracle auc {b['oracle']['auc']:.3f}, "
                     f"oracle quality {b['oracle']['max_quality']:.3f}.\n")
        head = "| router | auc | gap closed | max quality | cost to match best |" + \
               (" APGR | CPT(50%) | CPT(80%) |" if two else "")
        parts += [head, "|" + " --- |" * (head.count("|") - 1)]
        rows = sorted(d["routers"].items(), key=lambda kv: -(kv[1].get("auc") or -1))
        for name, m in rows:
            if m.get("error"):
                parts.append(f"| {name} | error: {m['error']} |")
                continue
            line = (f"| {name} | {_f(m['auc'])} | {_f(m['gap_closed'])} | {_f(m['max_quality'])} | "
                    f"{_f(m['cost_to_match_best'], '{:.2f}x')} |")
            if two:
                line += f" {_f(m['apgr'])} | {_f(m['cpt50'], '{:.1f}%')} | {_f(m['cpt80'], '{:.1f}%')} |"
            parts.append(line)
        parts.append(f"\n![{d['table']}]({path.parent.name}/frontier.png)\n")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    root = Path((argv or sys.argv[1:] or ["eval/reports"])[0])
    (root / "README.md").write_text(summary(root))
    print(f"wrote {root / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
