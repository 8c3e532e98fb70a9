"""JSON structured logs on stderr (one object a line), carrying the request id where known."""
from __future__ import annotations

import logging
import sys
import time

import orjson


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; ``extra={"request_id": ...}`` fields are kept."""

    KEEP = ("request_id", "expert", "profile", "status", "router", "latency_ms", "ttft_ms", "attempts",
            "cost_usd", "key_id", "model")

    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": round(time.time(), 3), "level": record.levelname.lower(), "logger": record.name,
                "message": record.getMessage()}
        for key in self.KEEP:
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # per-request INFO lines from the HTTP client and the file watcher would cost time on the hot path
    for name in ("httpx", "httpcore", "watchfiles", "watchfiles.main"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
