"""The label store: graded answers of shadowed prompts, in the request log's SQLite file.

One row per shadowed prompt (``label_prompts``: digest, embedding, the live expert, the prompt text
only when ``logging.store_prompts`` is on) and one per (prompt, expert, grader) grade (``labels``:
score, what the answer and the grade cost, the answer text only when ``shadow.store_answers``).
Grades of one answer by several graders are merged by priority: reference > feedback > judge
(a reference answer is ground truth; a client's feedback is about its own answer; a judge is an
estimate). ``training_set`` returns the (X, Y, cost) a router's ``fit`` takes, NaN where an expert
was not tried. Promotions and candidates are kept in ``learning_events``.

Sync on purpose: the gateway calls it from a worker thread, the simulation calls it directly.
"""
from __future__ import annotations

import csv
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import orjson

from router_gateway.domain.record import json_path

from router_gateway.learning.graders import Grade
from router_gateway.state.request_log import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS label_prompts (
    digest TEXT PRIMARY KEY, ts REAL NOT NULL, request_id TEXT, live_expert TEXT,
    embedding BLOB NOT NULL, prompt TEXT
);
CREATE TABLE IF NOT EXISTS labels (
    digest TEXT NOT NULL, expert TEXT NOT NULL, grader TEXT NOT NULL, score REAL NOT NULL,
    answer_cost_usd REAL NOT NULL, grade_cost_usd REAL NOT NULL, ts REAL NOT NULL,
    answer TEXT, note TEXT, PRIMARY KEY (digest, expert, grader)
);
CREATE TABLE IF NOT EXISTS learning_spend (
    day TEXT PRIMARY KEY, shadow_usd REAL NOT NULL DEFAULT 0, live_usd REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS learning_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL
);
"""
GRADER_PRIORITY = ("reference", "feedback", "judge")


def day_of(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _priority(grader: str) -> int:
    kind = grader.split(":", 1)[0]
    return GRADER_PRIORITY.index(kind) if kind in GRADER_PRIORITY else len(GRADER_PRIORITY)


@dataclass
class TrainingSet:
    """Labelled prompts as router training arrays."""

    digests: list[str]
    X: np.ndarray
    Y: np.ndarray          # (n, n_experts), NaN = not graded
    cost: np.ndarray       # (n, n_experts) what each graded answer cost, NaN elsewhere
    experts: list[str]
    live_expert: list[str | None]


class LabelStore:
    """Durable labels; safe for several threads (one connection, one lock)."""

    def __init__(self, path: str | Path, store_prompts: bool = True, store_answers: bool = False):
        self.path = Path(path)
        self.store_prompts = store_prompts
        self.store_answers = store_answers
        self._db: sqlite3.Connection = connect(self.path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing ---------------------------------------------------------------------------
    def add(self, digest: str, embedding: np.ndarray, grades: Iterable[Grade], *, answer_costs: dict[str, float],
            request_id: str | None = None, live_expert: str | None = None, prompt: str | None = None,
            answers: dict[str, str | None] | None = None, ts: float | None = None) -> int:
        """Store one shadowed prompt and its grades; returns how many grades were written."""
        return self.ingest(digest, embedding, grades, answer_costs=answer_costs, request_id=request_id,
                           live_expert=live_expert, prompt=prompt, answers=answers, ts=ts)[1]

    def ingest(self, digest: str, embedding: np.ndarray, grades: Iterable[Grade], *, answer_costs: dict[str, float],
               request_id: str | None = None, live_expert: str | None = None, prompt: str | None = None,
               answers: dict[str, str | None] | None = None, ts: float | None = None) -> tuple[bool, int]:
        """``add``, returning (whether the prompt is new here, grades written). Idempotent: a row seen
        again (another replica's, through learning.replicas) leaves one prompt and one grade per
        (prompt, expert, grader)."""
        ts = time.time() if ts is None else ts
        vec = np.asarray(embedding, dtype=np.float32).tobytes()
        rows = [(digest, g.expert, g.grader, float(g.score), float(answer_costs.get(g.expert, 0.0)),
                 float(g.cost_usd), ts, (answers or {}).get(g.expert) if self.store_answers else None, g.note)
                for g in grades]
        with self._lock, self._db:
            new = self._db.execute("INSERT OR IGNORE INTO label_prompts VALUES (?, ?, ?, ?, ?, ?)",
                                   (digest, ts, request_id, live_expert, vec,
                                    prompt if self.store_prompts else None)).rowcount == 1
            self._db.executemany("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return new, len(rows)

    def add_spend(self, shadow_usd: float = 0.0, live_usd: float = 0.0, ts: float | None = None) -> None:
        day = day_of(time.time() if ts is None else ts)
        with self._lock, self._db:
            self._db.execute("INSERT INTO learning_spend(day, shadow_usd, live_usd) VALUES (?, ?, ?) "
                             "ON CONFLICT(day) DO UPDATE SET shadow_usd = shadow_usd + excluded.shadow_usd, "
                             "live_usd = live_usd + excluded.live_usd", (day, shadow_usd, live_usd))

    def add_event(self, kind: str, data: dict[str, Any], ts: float | None = None) -> int:
        with self._lock, self._db:
            cur = self._db.execute("INSERT INTO learning_events(ts, kind, data) VALUES (?, ?, ?)",
                                   (time.time() if ts is None else ts, kind, orjson.dumps(data, default=str).decode()))
            return int(cur.lastrowid)

    # -- reading ---------------------------------------------------------------------------
    def spend(self, day: str | None = None) -> dict[str, float]:
        """Shadow and live USD, for one UTC day or in total."""
        query = "SELECT COALESCE(SUM(shadow_usd), 0), COALESCE(SUM(live_usd), 0) FROM learning_spend"
        with self._lock:
            row = (self._db.execute(query + " WHERE day = ?", (day,)) if day else self._db.execute(query)).fetchone()
        return {"shadow_usd": float(row[0]), "live_usd": float(row[1])}

    def events(self, kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql = "SELECT id, ts, kind, data FROM learning_events" + (" WHERE kind = ?" if kind else "")
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id DESC LIMIT ?", ((kind, limit) if kind else (limit,))).fetchall()
        return [{"id": i, "ts": ts, "kind": k, **orjson.loads(d)} for i, ts, k, d in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            prompts = self._db.execute("SELECT COUNT(*) FROM label_prompts").fetchone()[0]
            grades = self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
        return {"prompts": int(prompts), "grades": int(grades)}

    def _feedback_grades(self) -> list[tuple[str, str, str, float]]:
        """Client feedback on shadowed requests, as grades of the expert that answered them."""
        try:
            with self._lock:
                return self._db.execute(
                    "SELECT p.digest, p.live_expert, 'feedback', f.score FROM label_prompts p "
                    "JOIN feedback f ON f.request_id = p.request_id WHERE p.live_expert IS NOT NULL "
                    "AND f.score BETWEEN 0 AND 1 ORDER BY f.ts").fetchall()
        except sqlite3.OperationalError:  # no feedback table in this database
            return []

    def training_set(self, experts: list[str], graders: Iterable[str] | None = None) -> TrainingSet:
        """All labelled prompts as arrays, grades merged by grader priority (see module doc)."""
        allowed = None if graders is None else set(graders)
        with self._lock:
            prompts = self._db.execute("SELECT digest, embedding, live_expert FROM label_prompts "
                                       "ORDER BY ts, digest").fetchall()
            grades = self._db.execute("SELECT digest, expert, grader, score, answer_cost_usd FROM labels").fetchall()
        feedback = [(d, e, g, s, float("nan")) for d, e, g, s in self._feedback_grades()]
        row_of = {p[0]: i for i, p in enumerate(prompts)}
        col_of = {e: j for j, e in enumerate(experts)}
        n, m = len(prompts), len(experts)
        Y, cost = np.full((n, m), np.nan), np.full((n, m), np.nan)
        rank = np.full((n, m), 99)
        for digest, expert, grader, score, answer_cost in list(grades) + feedback:
            i, j = row_of.get(digest), col_of.get(expert)
            kind = grader.split(":", 1)[0]
            if i is None or j is None or (allowed is not None and kind not in allowed):
                continue
            if _priority(grader) <= rank[i, j]:
                rank[i, j] = _priority(grader)
                Y[i, j] = score
            if np.isfinite(answer_cost):
                cost[i, j] = answer_cost
        X = (np.stack([np.frombuffer(p[1], dtype=np.float32) for p in prompts]) if prompts
             else np.zeros((0, 0), dtype=np.float32))
        return TrainingSet([p[0] for p in prompts], X, Y, cost, list(experts), [p[2] for p in prompts])

    def logged_propensities(self, digests: list[str]) -> np.ndarray:
        """Per digest, the propensity the request log recorded for the live answer; nan where unknown
        (no request log in this database, a row from another replica, a fallback answered)."""
        with self._lock:
            try:
                found = dict(self._db.execute(
                    "SELECT p.digest, json_extract(r.data, ?) FROM label_prompts p "
                    "JOIN requests r ON r.request_id = p.request_id", (json_path("propensity"),)).fetchall())
            except sqlite3.OperationalError:  # no request log in this database (the replay, unit tests)
                found = {}
        return np.array([np.nan if found.get(d) is None else float(found[d]) for d in digests], dtype=np.float64)

    def export_csv(self, path: str | Path, experts: list[str]) -> int:
        """Write labels in the routing-table format (prompt, fold, task, score:/cost:<expert>) plus a
        ``digest`` column; ``prompt`` is empty when prompts are not stored. Returns rows written."""
        data = self.training_set(experts)
        with self._lock:
            texts = dict(self._db.execute("SELECT digest, prompt FROM label_prompts").fetchall())
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["prompt", "digest", "fold", "task"] + [f"score:{e}" for e in experts]
                            + [f"cost:{e}" for e in experts])
            for i, digest in enumerate(data.digests):
                fold = int(digest[:8], 16) % 5
                writer.writerow([texts.get(digest) or "", digest, fold, "live"]
                                + [_cell(v) for v in data.Y[i]] + [_cell(v) for v in data.cost[i]])
        return len(data.digests)


def _cell(value: float) -> str:
    return "" if not np.isfinite(value) else repr(float(value))
