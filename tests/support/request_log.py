"""Read a gateway process's request log (SQLite) from a test, waiting for the flush instead of sleeping."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from tests.support.polling import wait_for


def read_record(db_path: Path, request_id: str) -> dict | None:
    """The logged record of a request, or None while it is not written (or the log does not exist yet)."""
    try:
        with sqlite3.connect(db_path) as db:
            row = db.execute("SELECT data FROM requests WHERE request_id = ?", (request_id,)).fetchone()
    except sqlite3.OperationalError:  # the gateway has not created the table yet
        return None
    return orjson.loads(row[0]) if row else None


def logged_record(db_path: Path, request_id: str, timeout: float = 10.0) -> dict:
    """The record of a request once the log has flushed it; fails the test after ``timeout`` seconds."""
    record = wait_for(lambda: read_record(db_path, request_id), timeout)
    assert record, f"no log record for {request_id} within {timeout} s"
    return record


def logged_ids(db_path: Path) -> set[str]:
    """The request ids the log holds now."""
    with sqlite3.connect(db_path) as db:
        return {row[0] for row in db.execute("SELECT request_id FROM requests")}
