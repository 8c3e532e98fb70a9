"""The request record: one per request, written by the pipeline, read by attribute by everyone else.

The pipeline builds a ``RequestRecord`` when a request ends (answered, refused, failed or cut); the
request log stores ``to_row()``, and the observers (metrics, live view, traces, log lines), the
learning service and the key limits read its attributes. ``to_row`` is the one mapping to the stored
JSON row: its keys and their order are those the log has always had, so existing logs,
``router-gateway logs export``, training from logs and off-policy evaluation read old and new rows
alike. ``from_row`` reads a stored row back (the online learner, training from logs).

Nested parts stay in their logged JSON shape (``candidates``, ``ineligible``, ``pacing``, ``cascade``)
because routing and the cascade own their structure; ``attempts`` are typed (``Attempt``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Protocol


@dataclass(slots=True)
class Attempt:
    """One try at one expert, for the log and the response headers."""

    expert: str
    outcome: str  # ok | connect_error | timeout | http_<status> | protocol_error
    ms: float

    def as_dict(self) -> dict[str, Any]:
        return {"expert": self.expert, "outcome": self.outcome, "ms": round(self.ms, 2)}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Attempt:
        ms = row.get("ms")
        return cls(row.get("expert") or "", row.get("outcome") or "", float(ms) if isinstance(ms, (int, float)) else 0.0)


@dataclass(slots=True)
class RequestRecord:
    """What one request did. Field order is the stored row's key order (see ``to_row``)."""

    request_id: str
    ts: float
    model: str | None = None
    profile: str | None = None
    router: str | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)  # routing's ranked view, as logged
    ineligible: dict[str, str] = field(default_factory=dict)
    chosen_expert: str | None = None
    propensity: float | None = None  # None when a fallback answered: OPE skips such rows
    explored: bool = False
    cost_weight: float | None = None
    pacing: dict[str, Any] | None = None
    prompt_digest: str | None = None
    prompt: str | None = None
    status: int = 500
    error: str | None = None
    stream: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    ttft_ms: float | None = None
    latency_ms: float | None = None
    embed_ms: float | None = None
    route_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    key_id: str | None = None
    config_version: int | None = None
    # -- written only when present ---------------------------------------------------------
    cascade: dict[str, Any] | None = None  # tiers, confidences, the labelled pair (cascade profiles)
    endpoint: str | None = None  # the OpenAI endpoint, for all but chat completions
    session: str | None = None  # with session_source ... affinity_moved_reason: requests in a session
    session_source: str | None = None
    affinity: str | None = None  # new | kept | moved | pinned | off; None: no session, none of the five logged
    affinity_previous_expert: str | None = None
    affinity_moved_reason: str | None = None

    def to_row(self, store_prompt: bool = True) -> dict[str, Any]:
        """The stored JSON row (the only place the record becomes one); without ``prompt`` if prompts
        are not to be stored."""
        # a literal (runs on every request: faster than building it from ALWAYS); test_request_record
        # holds it to the rows written before, and to ALWAYS
        row = {"request_id": self.request_id, "ts": self.ts, "model": self.model, "profile": self.profile,
               "router": self.router, "candidates": self.candidates, "ineligible": self.ineligible,
               "chosen_expert": self.chosen_expert, "propensity": self.propensity, "explored": self.explored,
               "cost_weight": self.cost_weight, "pacing": self.pacing, "prompt_digest": self.prompt_digest,
               "prompt": self.prompt, "status": self.status, "error": self.error, "stream": self.stream,
               "attempts": [a.as_dict() for a in self.attempts], "ttft_ms": self.ttft_ms,
               "latency_ms": self.latency_ms, "embed_ms": self.embed_ms, "route_ms": self.route_ms,
               "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
               "cost_usd": self.cost_usd, "key_id": self.key_id, "config_version": self.config_version}
        if not store_prompt:
            del row["prompt"]
        if self.cascade is not None:
            row["cascade"] = self.cascade
        if self.endpoint is not None:
            row["endpoint"] = self.endpoint
        if self.affinity is not None:
            for name in SESSION:
                row[name] = getattr(self, name)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RequestRecord:
        """A stored row as a record; keys the record does not know (``feedback`` in an export) are left out."""
        values = {name: row[name] for name in NAMES if name in row}
        attempts = row.get("attempts")
        values["attempts"] = [Attempt.from_dict(a) for a in attempts if isinstance(a, dict)] \
            if isinstance(attempts, list) else []
        values.setdefault("request_id", "")
        values.setdefault("ts", 0.0)
        values.setdefault("status", 200)  # what readers of old rows assumed when a row had none
        return cls(**values)


NAMES: tuple[str, ...] = tuple(f.name for f in fields(RequestRecord))
SESSION: tuple[str, ...] = ("session", "session_source", "affinity", "affinity_previous_expert",
                            "affinity_moved_reason")
ALWAYS: tuple[str, ...] = NAMES[:NAMES.index("cascade")]


class RecordObserver(Protocol):
    """What the gateway's observers (observability.Observability) implement; both run on the request
    path, so they must be cheap and never raise into it."""

    def on_record(self, record: RequestRecord) -> None: ...

    def on_embed_batch(self, size: int) -> None: ...

    def on_score_batch(self, size: int) -> None: ...


def json_path(name: str) -> str:
    """The SQLite JSON path of a record field (``json_extract(data, json_path("key_id"))``); a name the
    record does not have fails here, not as a silent NULL in SQL."""
    if name not in NAMES:
        raise KeyError(f"RequestRecord has no field {name!r}")
    return f"$.{name}"
