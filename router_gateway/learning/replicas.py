"""Label rows of every replica, through one Redis stream, for whichever replica retrains.

Each replica writes its labels to its own log database; with Redis, every row it stores is also
appended to the stream ``<prefix>learning:labels`` (``XADD ... MAXLEN ~ replicas.stream_max_rows``:
memory stays bounded, the oldest rows are trimmed). Every replica reads the rows it has not seen
(``XRANGE`` after the last id it read) into its own store, before each retrain and on each follow
tick, so the replica that takes the retrain lock trains on everyone's labels. Ingesting is
idempotent (the store keeps one prompt per digest and one grade per (digest, expert, grader)); a
replica skips its own rows. A replica started after rows were trimmed gets only the rows still in
the stream. The last retrain's label count is shared too (``<prefix>learning:retrained``), so a
replica does not retrain again on labels another one just used.
"""
from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from router_gateway.learning.graders import Grade

log = logging.getLogger("router_gateway.learning")
READ_BATCH = 500


def encode_row(digest: str, embedding: np.ndarray, grades, answer_costs: dict[str, float], *, replica: str,
               request_id: str | None, live_expert: str | None, prompt: str | None, ts: float) -> bytes:
    """One label row as the stream carries it (the embedding as base64 float32)."""
    return orjson.dumps({
        "replica": replica, "digest": digest, "ts": ts, "request_id": request_id, "live_expert": live_expert,
        "prompt": prompt, "x": base64.b64encode(np.asarray(embedding, dtype=np.float32).tobytes()).decode(),
        "grades": [[g.expert, g.grader, g.score, g.cost_usd, g.note] for g in grades],
        "answer_costs": answer_costs})


def decode_row(raw: bytes) -> dict[str, Any]:
    """The keyword arguments of ``LabelStore.ingest`` (plus ``replica``)."""
    row = orjson.loads(raw)
    return {"replica": row["replica"], "digest": row["digest"],
            "embedding": np.frombuffer(base64.b64decode(row["x"]), dtype=np.float32),
            "grades": [Grade(e, float(s), g, float(c), n) for e, g, s, c, n in row["grades"]],
            "answer_costs": row.get("answer_costs") or {}, "request_id": row.get("request_id"),
            "live_expert": row.get("live_expert"), "prompt": row.get("prompt"), "ts": row.get("ts")}


class LabelStream:
    """Publish this replica's label rows, read everyone else's (see module doc)."""

    def __init__(self, redis: Callable[[], Any], prefix: str, replica: str, max_rows: int):
        self.redis = redis            # the client while connected, else None
        self.key = prefix + "learning:labels"
        self.marker = prefix + "learning:retrained"
        self.replica = replica
        self.max_rows = int(max_rows)
        self.last_id = b"0-0"        # the last stream entry read

    async def publish(self, row: bytes) -> bool:
        client = self.redis()
        if client is None:
            return False
        await client.xadd(self.key, {b"row": row}, maxlen=self.max_rows, approximate=True)
        return True

    async def read_new(self) -> list[dict[str, Any]]:
        """Rows of other replicas added since the last read (all of them, in batches)."""
        client = self.redis()
        out: list[dict[str, Any]] = []
        while client is not None:
            entries = await client.xrange(self.key, min=b"(" + self.last_id, count=READ_BATCH)
            for entry_id, fields in entries:
                self.last_id = entry_id if isinstance(entry_id, bytes) else str(entry_id).encode()
                try:
                    row = decode_row(fields[b"row"])
                except (KeyError, ValueError, TypeError) as exc:  # a malformed row is skipped, not fatal
                    log.warning("learning: skipping an unreadable shared label row: %s", exc)
                    continue
                if row["replica"] != self.replica:
                    out.append(row)
            if len(entries) < READ_BATCH:
                break
        return out

    async def mark_retrained(self, labels: int, ts: float) -> None:
        client = self.redis()
        if client is not None:
            await client.set(self.marker, orjson.dumps({"labels": labels, "ts": ts, "replica": self.replica}))

    async def last_retrain(self) -> dict[str, Any] | None:
        client = self.redis()
        raw = await client.get(self.marker) if client is not None else None
        return orjson.loads(raw) if raw else None
