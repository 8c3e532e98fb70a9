"""Loading routing tables for evaluation.

``routers.data.load_table`` refuses scores outside [0, 1]. Upstream metric scores can stray a
little (routerarena has one NarrativeQA F1-like score of -0.033), so eval clips them into range
and says so on stderr rather than refusing a third-party table.
"""
from __future__ import annotations

import sys
from pathlib import Path

from routers.data import RoutingTable, TableError, load_table


def load_eval_table(path: str | Path) -> RoutingTable:
    """Load a routing table, clipping out-of-range scores into [0, 1] (with a warning)."""
    try:
        return load_table(path)
    except TableError as exc:
        if "scores must be in [0, 1]" not in str(exc):
            raise
    table, bad = _load_unchecked(Path(path))
    print(f"warning: {path}: {bad} score(s) outside [0, 1] clipped", file=sys.stderr)
    return table


def _load_unchecked(path: Path) -> tuple[RoutingTable, int]:
    """``load_table`` without the score-range check (reads a temporary range-clipped copy)."""
    import csv
    import tempfile

    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f, \
            tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="",
                                        encoding="utf-8") as tmp:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(tmp, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        bad = 0
        for row in reader:
            for key, value in row.items():
                if key.startswith("score:") and value not in (None, ""):
                    score = float(value)
                    bad += not 0.0 <= score <= 1.0
                    row[key] = repr(min(1.0, max(0.0, score)))
            writer.writerow(row)
    try:
        table = load_table(tmp.name)
    finally:
        Path(tmp.name).unlink(missing_ok=True)
    table.name = path.stem
    return table, bad


def sample_table(table: RoutingTable, n: int | None, seed: int = 0) -> RoutingTable:
    """A seeded uniform sample of ``n`` rows (kept in table order), or the table itself.

    The sample is a prefix of one seeded permutation, so a smaller sample is part of a larger one
    with the same seed (embeddings cached for one serve the other)."""
    import numpy as np

    if not n or n >= len(table):
        return table
    rows = np.sort(np.random.default_rng(seed).permutation(len(table))[:n])
    return table.subset(rows)
