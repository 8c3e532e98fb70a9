"""Embeddings of many prompts (tables, logs), cached on disk by prompt digest.

A second training or eval run on the same data does not re-embed. One SQLite file per embedder
model and backend; values are raw float32 bytes (no pickle).
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from router_gateway.embedding.base import Embedder


def default_cache_dir() -> Path:
    """``$ROUTER_GATEWAY_CACHE`` or ``~/.cache/router-gateway``."""
    return Path(os.environ.get("ROUTER_GATEWAY_CACHE", Path.home() / ".cache" / "router-gateway"))


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def embed_cached(embedder: Embedder, texts: list[str], cache_dir: str | Path | None = None,
                 batch_size: int = 256, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Embed ``texts`` (n, dim) float32, reading and filling the on-disk cache."""
    info = embedder.info
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(cache_dir / f"embeddings-{info.name}-{info.backend}-{info.dim}.sqlite")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS emb (digest TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        digests = [text_digest(t) for t in texts]
        found = _lookup(db, set(digests), info.dim)
        todo = sorted({d: i for i, d in enumerate(digests) if d not in found}.items(), key=lambda kv: kv[1])
        report = progress or _stderr_progress
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            vecs = embedder.embed([texts[i] for _, i in chunk])
            rows = [(d, v.astype(np.float32).tobytes()) for (d, _), v in zip(chunk, vecs)]
            db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)", rows)
            db.commit()
            found.update({d: v for (d, _), v in zip(chunk, vecs)})
            report(min(start + batch_size, len(todo)), len(todo))
        return np.stack([found[d] for d in digests]).astype(np.float32) if texts else \
            np.zeros((0, info.dim), dtype=np.float32)
    finally:
        db.close()


def _lookup(db: sqlite3.Connection, digests: set[str], dim: int) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    keys = list(digests)
    for start in range(0, len(keys), 900):  # SQLite's bound-parameter limit
        chunk = keys[start:start + 900]
        marks = ",".join("?" * len(chunk))
        for digest, blob in db.execute(f"SELECT digest, vec FROM emb WHERE digest IN ({marks})", chunk):
            vec = np.frombuffer(blob, dtype=np.float32)
            if vec.size == dim:
                found[digest] = vec
    return found


_last_report = [0.0]


def _stderr_progress(done: int, total: int) -> None:
    now = time.monotonic()
    if done == total or now - _last_report[0] > 2.0:
        _last_report[0] = now
        print(f"  embedding prompts: {done}/{total}", file=sys.stderr, flush=True)
