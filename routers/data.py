"""Routing tables: one row per prompt with ``score:<model>`` and ``cost:<model>`` columns.

Format (../shared/data/README.md): prompt, fold (0-4), task, score:<model> in [0, 1],
cost:<model> in USD. Any extra columns are ignored; a missing score is NaN (partial labels).
"""
from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class RoutingTable:
    """A loaded routing table; ``scores`` and ``costs`` are (n, n_models) float arrays."""

    name: str
    prompts: list[str]
    folds: np.ndarray
    tasks: list[str]
    models: list[str]
    scores: np.ndarray
    costs: np.ndarray

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows: np.ndarray) -> "RoutingTable":
        rows = np.asarray(rows)
        idx = np.flatnonzero(rows) if rows.dtype == bool else rows
        return RoutingTable(self.name, [self.prompts[i] for i in idx], self.folds[idx],
                            [self.tasks[i] for i in idx], list(self.models),
                            self.scores[idx], self.costs[idx])

    def select_models(self, models: list[str]) -> "RoutingTable":
        cols = [self.models.index(m) for m in models]
        return RoutingTable(self.name, self.prompts, self.folds, self.tasks, list(models),
                            self.scores[:, cols], self.costs[:, cols])


class TableError(ValueError):
    """A routing table that does not follow the format."""


def load_table(path: str | Path) -> RoutingTable:
    """Read a routing table CSV; raises TableError naming what is wrong."""
    path = Path(path)
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if "prompt" not in header:
            raise TableError(f"{path}: no 'prompt' column")
        models = [h[len("score:"):] for h in header if h.startswith("score:")]
        if not models:
            raise TableError(f"{path}: no 'score:<model>' columns")
        missing = [m for m in models if f"cost:{m}" not in header]
        if missing:
            raise TableError(f"{path}: no cost column for {missing}")
        prompts, folds, tasks, scores, costs = [], [], [], [], []
        for line, row in enumerate(reader, start=2):
            prompts.append(row["prompt"])
            folds.append(int(row["fold"]) if row.get("fold", "") != "" else hash(row["prompt"]) % 5)
            tasks.append(row.get("task") or "")
            scores.append([_num(row[f"score:{m}"], path, line) for m in models])
            costs.append([_num(row[f"cost:{m}"], path, line) for m in models])
    table = RoutingTable(path.stem, prompts, np.asarray(folds), tasks, models,
                         np.asarray(scores, dtype=np.float64), np.asarray(costs, dtype=np.float64))
    if np.nanmin(table.scores) < 0 or np.nanmax(table.scores) > 1:
        raise TableError(f"{path}: scores must be in [0, 1]")
    return table


def _num(value: str | None, path: Path, line: int) -> float:
    if value is None or value.strip() == "":
        return float("nan")
    try:
        return float(value)
    except ValueError:
        raise TableError(f"{path}:{line}: {value!r} is not a number") from None
