"""The request log: one record per request, in SQLite (WAL), written in batches off the request path.

Records are queued in memory and flushed every ``flush_interval_ms`` (or at ``max_batch``) by one
writer thread. A SIGKILL loses at most the records of the last flush interval; SIGTERM flushes.
Feedback lives in its own table so a log record is never rewritten.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import orjson

from router_gateway.domain.record import RequestRecord, json_path
from router_gateway.task_stop import stop_tasks

log = logging.getLogger("router_gateway.log")

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT NOT NULL,
    ts REAL NOT NULL,
    score REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback(request_id);
"""


def prompt_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (and create) the log database in WAL mode; safe for several processes."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=30000")
    db.executescript(SCHEMA)
    return db


class RequestLog:
    """Async facade: ``record()`` never blocks the request; a background task flushes batches."""

    def __init__(self, path: str | Path, flush_interval_ms: int = 200, max_batch: int = 500,
                 store_prompts: bool = True):
        self.path = Path(path)
        self.flush_interval = flush_interval_ms / 1000.0
        self.max_batch = max_batch
        self.store_prompts = store_prompts
        self._pending: list[tuple[str, float, str]] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request-log")
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._task: asyncio.Task | None = None
        self._writes: set[asyncio.Future] = set()  # submitted to the writer thread, not yet done
        self._wake: asyncio.Event | None = None
        self.written = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._db = await loop.run_in_executor(self._pool, connect, self.path)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._flusher(), name="request-log-flusher")

    def record(self, record: RequestRecord) -> None:
        """Queue one record as its stored row; prompts are dropped if not to be stored."""
        row = record.to_row(store_prompt=self.store_prompts)
        self._pending.append((record.request_id, record.ts, orjson.dumps(row, default=str).decode()))
        if len(self._pending) >= self.max_batch and self._wake:
            self._wake.set()

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        write = asyncio.get_running_loop().run_in_executor(self._pool, self._write, batch)
        self._writes.add(write)
        write.add_done_callback(lambda done: self._write_done(done, batch))
        # shielded: cancelling the caller (the flusher at shutdown, a request whose client left) must
        # not cancel a write the pool has not started yet, or the batch would be silently dropped
        await asyncio.shield(write)

    def _write_done(self, write: asyncio.Future, batch: list[tuple[str, float, str]]) -> None:
        """Runs before the flush awaiting the write resumes, and also when that flush was cancelled."""
        self._writes.discard(write)
        if not write.cancelled() and isinstance(write.exception(), sqlite3.Error):
            self._pending[:0] = batch  # keep the records for the next flush instead of losing them

    def _write(self, batch: list[tuple[str, float, str]]) -> None:
        assert self._db is not None
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO requests(request_id, ts, data) VALUES (?, ?, ?)", batch)
        self.written += len(batch)

    async def _flusher(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.flush_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except sqlite3.Error as exc:  # keep serving; the batch is retried next interval
                log.error("request log write failed: %s", exc)

    async def close(self) -> None:
        if self._task:
            await stop_tasks([self._task], "request log")
        await self.flush()
        # a flush cancelled above (or by a request whose client left) still has its shielded write queued:
        # the database must stay open until it is done
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)
        if self._pending:  # such a write failed and put its batch back: one last try
            try:
                await self.flush()
            except sqlite3.Error as exc:
                log.error("request log: %d records not written at shutdown: %s", len(self._pending), exc)
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.get_running_loop().run_in_executor(self._pool, db.close)
        self._pool.shutdown(wait=True)

    # -- feedback --------------------------------------------------------------------------
    def is_pending(self, request_id: str) -> bool:
        return any(rid == request_id for rid, _, _ in self._pending)

    async def add_feedback(self, request_id: str, score: float, extra: dict[str, Any],
                           only_key: str | None = None) -> bool:
        """Attach feedback; False if the request id is unknown, or (``only_key``) made by another key."""
        if self.is_pending(request_id):
            await self.flush()
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._add_feedback, request_id, score, extra, only_key)

    def _add_feedback(self, request_id: str, score: float, extra: dict[str, Any],
                      only_key: str | None = None) -> bool:
        assert self._db is not None
        with self._lock, self._db:
            row = self._db.execute("SELECT json_extract(data, ?) FROM requests WHERE request_id = ?",
                                   (json_path("key_id"), request_id)).fetchone()
            if row is None or (only_key is not None and row[0] != only_key):
                return False
            self._db.execute("INSERT INTO feedback(request_id, ts, score, data) VALUES (?, ?, ?, ?)",
                             (request_id, time.time(), score, orjson.dumps(extra).decode()))
        return True

    async def get(self, request_id: str) -> dict[str, Any] | None:
        """One logged record by id (flushing first if it is still queued)."""
        if self.is_pending(request_id):
            await self.flush()
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._get, request_id)

    def _get(self, request_id: str) -> dict[str, Any] | None:
        assert self._db is not None
        with self._lock:
            row = self._db.execute("SELECT data FROM requests WHERE request_id = ?", (request_id,)).fetchone()
        return orjson.loads(row[0]) if row else None

    async def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        await self.flush()
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._recent, limit)

    def _recent(self, limit: int) -> list[dict[str, Any]]:
        assert self._db is not None
        with self._lock:
            rows = self._db.execute("SELECT data FROM requests ORDER BY ts DESC LIMIT ?", (limit,)).fetchall()
        return [orjson.loads(r[0]) for r in rows]


def export_records(path: str | Path, since: float | None = None) -> Iterator[dict[str, Any]]:
    """Every logged request with its latest feedback (``feedback: {score, ...}`` or None), oldest first."""
    db = connect(path)
    try:
        query = ("SELECT r.data, f.score, f.data FROM requests r LEFT JOIN feedback f ON f.rowid = "
                 "(SELECT rowid FROM feedback WHERE request_id = r.request_id ORDER BY ts DESC LIMIT 1) "
                 "WHERE r.ts >= ? ORDER BY r.ts")
        for data, score, fdata in db.execute(query, (since or 0.0,)):
            record = orjson.loads(data)
            record["feedback"] = ({"score": score, **orjson.loads(fdata)} if score is not None else None)
            yield record
    finally:
        db.close()


def count_records(path: str | Path) -> int:
    db = connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    finally:
        db.close()
