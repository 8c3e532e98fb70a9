"""Training data from request logs (JSONL from ``router-gateway logs export``) or a bench table.

Logs give partial labels: one expert per request, its feedback score as quality, NaN elsewhere.
Rows without prompt text, without a feedback score, or with an expert outside the expert list are
skipped and counted. Tables give full labels and the task column (domain labels).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from router_gateway.domain.record import RequestRecord


@dataclass
class TrainingData:
    """Prompts with a (n, k) quality matrix (NaN where untried) and, for logs, the logged choices."""

    source: str
    prompts: list[str]
    experts: list[str]
    Y: np.ndarray
    cost: np.ndarray
    digest: str
    domains: list[str] | None = None
    actions: np.ndarray | None = None           # logged expert index per row (logs only)
    propensities: np.ndarray | None = None      # logging propensity per row (NaN = unknown)
    request_ids: list[str] | None = None
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def rewards(self) -> np.ndarray:
        return self.Y[np.arange(len(self.actions)), self.actions]

    @property
    def logged_cost(self) -> np.ndarray:
        return self.cost[np.arange(len(self.actions)), self.actions]


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_experts_yaml(path: str | Path) -> dict[str, dict[str, Any]]:
    """The ``experts:`` map of an experts.yaml (a plain read; the gateway's loader validates fully)."""
    import yaml

    doc = yaml.safe_load(Path(path).read_text()) or {}
    experts = doc.get("experts")
    if not isinstance(experts, dict) or not experts:
        raise ValueError(f"{path}: no 'experts:' map")
    return {str(k): (v or {}) for k, v in experts.items()}


def load_logs(path: str | Path, experts: list[str] | None = None) -> TrainingData:
    """Read logged requests (JSONL); ``experts`` fixes the columns (default: every chosen expert, sorted)."""
    records, skipped = [], {"bad_json": 0, "no_prompt": 0, "no_feedback": 0, "failed": 0, "unknown_expert": 0}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                skipped["bad_json"] += 1
                continue
            reason = _skip_reason(rec)
            if reason:
                skipped[reason] += 1
                continue
            # checked above; the export adds the request's feedback next to the record's fields
            records.append((RequestRecord.from_row(rec), float(rec["feedback"]["score"])))
    names = list(experts) if experts else sorted({r.chosen_expert for r, _ in records})
    index = {n: i for i, n in enumerate(names)}
    kept = [(r, score) for r, score in records if r.chosen_expert in index]
    skipped["unknown_expert"] = len(records) - len(kept)
    n, k = len(kept), len(names)
    Y, cost = np.full((n, k), np.nan), np.full((n, k), np.nan)
    actions = np.array([index[r.chosen_expert] for r, _ in kept], dtype=np.int64)
    rows = np.arange(n)
    Y[rows, actions] = [min(1.0, max(0.0, score)) for _, score in kept]
    cost[rows, actions] = [_num(r.cost_usd) for r, _ in kept]
    props = np.array([_num(r.propensity) for r, _ in kept])
    return TrainingData(str(path), [r.prompt for r, _ in kept], names, Y, cost, file_digest(path),
                        actions=actions, propensities=props, request_ids=[str(r.request_id) for r, _ in kept],
                        skipped={k: v for k, v in skipped.items() if v})


def _skip_reason(rec: Any) -> str | None:
    """Why an exported row cannot be a training row (it is any JSON: checked before it is read as a record)."""
    if not isinstance(rec, dict):
        return "bad_json"
    if not isinstance(rec.get("prompt"), str) or not rec["prompt"].strip():
        return "no_prompt"
    fb = rec.get("feedback")
    if not isinstance(fb, dict) or not isinstance(fb.get("score"), (int, float)) or not math.isfinite(fb["score"]):
        return "no_feedback"
    if not rec.get("chosen_expert") or int(rec.get("status") or 200) >= 400:
        return "failed"
    return None


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out if math.isfinite(out) else float("nan")


def load_bench_table(path: str | Path, experts: list[str] | None = None) -> TrainingData:
    """A bench table (full labels); ``experts`` selects and orders the model columns."""
    from routers.data import load_table

    table = load_table(path)
    if experts:
        missing = [e for e in experts if e not in table.models]
        if missing:
            raise ValueError(f"{path}: no score columns for experts {missing} (table has {table.models})")
        table = table.select_models(list(experts))
    return TrainingData(str(path), table.prompts, list(table.models), table.scores, table.costs,
                        file_digest(path), domains=list(table.tasks))


#: column names tried, in order, for the text and the label of a labelled-prompt CSV
TEXT_COLUMNS = ("prompt", "text", "question")
LABEL_COLUMNS = ("domain", "task", "subject", "category", "label")


def load_labelled_prompts(path: str | Path, label_column: str | None = None) -> tuple[list[str], list[str]]:
    """Prompts and their domain labels from a CSV (e.g. ../shared/data/domain/); rows without both are
    skipped. The text column is the first of TEXT_COLUMNS present; the label column ``label_column`` or
    the first of LABEL_COLUMNS present."""
    import csv
    import sys

    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        text = next((c for c in TEXT_COLUMNS if c in header), None)
        label = label_column or next((c for c in LABEL_COLUMNS if c in header), None)
        if text is None or label not in header:
            raise ValueError(f"{path}: needs a text column ({', '.join(TEXT_COLUMNS)}) and a label column "
                             f"({label_column or ', '.join(LABEL_COLUMNS)}); found {', '.join(header)}")
        rows = [(r[text], r[label]) for r in reader if (r.get(text) or "").strip() and (r.get(label) or "").strip()]
    if not rows:
        raise ValueError(f"{path}: no labelled prompts")
    return [t for t, _ in rows], [lab.strip() for _, lab in rows]
