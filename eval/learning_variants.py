"""One table over several learning-sim runs (``python -m eval.learning_sim --out DIR ...`` each): per run
kind, the final live router's gap closed (mean and per seed), the best candidate's, and promotions.

    python -m eval.learning_variants NAME=DIR [NAME=DIR ...] > table.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from eval.learning_sim import run_name


def rows(name: str, folder: Path) -> list[str]:
    out = json.loads((folder / "learning.json").read_text())
    by_kind: dict[str, list[tuple[float, float, int]]] = {}
    for r in out["runs"]:
        best = max([c["gap_closed"] for c in r["candidates"] if c["gap_closed"] is not None] or [0.0])
        by_kind.setdefault(run_name(r), []).append((r["final"]["gap_closed"], best, r["final"]["promotions"]))
    lines = []
    for kind, v in by_kind.items():
        a = np.array(v)
        lines.append(f"| {name} | {kind} | {a[:, 0].mean():.3f} | {', '.join(f'{x:.3f}' for x in a[:, 0])} | "
                     f"{a[:, 1].mean():.3f} | {', '.join(str(int(x)) for x in a[:, 2])} |")
    return lines


def main(argv: list[str]) -> int:
    print("| variant | run | final gap closed, mean | per seed | best candidate, mean | promotions per seed |")
    print("| --- | --- | --- | --- | --- | --- |")
    for spec in argv:
        name, folder = spec.rsplit("=", 1)
        print("\n".join(rows(name, Path(folder))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
