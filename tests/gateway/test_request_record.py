"""The typed request record keeps the stored log row byte for byte as the gateway wrote it before.

``tests/fixtures/request_rows.jsonl`` holds the rows the dict-building pipeline (before
domain/record.py existed, commit 244efe5) wrote for the cases below: run this file as a script with
that tree first on PYTHONPATH to regenerate it (``python tests/gateway/test_request_record.py``). The
test writes the same cases through today's pipeline and compares the bytes, so existing logs,
``router-gateway logs export``, training from logs and OPE read old and new rows alike.

Only ``router_gateway`` modules that exist in both trees are imported at the top.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import orjson

from router_gateway import pipeline
from router_gateway.cascade.runner import CascadeResult, TierRecord
from router_gateway.domain.config import parse_config
from router_gateway.domain.errors import UpstreamError
from router_gateway.domain.protocol import ChatRequest
from router_gateway.forwarding.result import Attempt, ForwardResult
from router_gateway.routing.service import Candidate, Decision
from router_gateway.state.sessions import AffinityInfo, SessionRef

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "request_rows.jsonl"
CONFIG = """
experts:
  a: {base_url: http://a/v1, model: a-served, price: {input_per_mtok: 1.0, output_per_mtok: 2.0}}
  b: {base_url: http://b/v1, model: b-served, price: {input_per_mtok: 0.1, output_per_mtok: 0.2}}
routers: {s: {type: strongest}}
profiles: {auto: {router: s}}
"""


def _decision(**over) -> Decision:
    fields = {"request_id": "req-1", "profile": "auto", "router": "s",
              "candidates": [Candidate("a", 0.91234567, 1.5e-5, 0.8812345, wait_s=0.012345),
                             Candidate("b", 0.5, 1e-6, 0.49)],
              "ineligible": {"c": "context window too small"}, "propensity": 0.9, "explored": True,
              "cost_weight": 0.25, "prompt_text": "What is 2+2?", "embed_ms": 1.25, "route_ms": 0.125}
    fields.update(over)
    return Decision(**fields)


def _cases() -> list[tuple]:
    """(name, ctx fields, chat fields, decision, result, status, error, stream_error)"""
    usage = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    answered = ForwardResult("a", 200, [Attempt("a", "ok", 12.3456)], body=b"{}", usage=usage, ttft_ms=None)
    fallback = ForwardResult("b", 200, [Attempt("a", "timeout", 3000.0), Attempt("b", "ok", 5.0)], usage=usage,
                             ttft_ms=4.5)
    paced = _decision(extra={"pacing": {"key": "k1", "factor": 1.5}},
                      affinity=AffinityInfo(SessionRef("s-abc", "header"), "moved", 600.0, "b", "unhealthy"))
    tiers = [TierRecord("b", "escalated", 0.31, usage, 2e-6, 10.0, 0.5, "4"),
             TierRecord("a", "final", None, usage, 2.6e-5, 20.0, None, "four")]
    cascade = CascadeResult("a", 200, [Attempt("b", "ok", 10.0), Attempt("a", "ok", 20.0)], body=b"{}",
                            usage=usage, tiers=tiers, cost_usd=2.8e-5, threshold=0.5, verifier="logprob")
    failed = UpstreamError("no expert answered")
    failed.attempts = [Attempt("a", "http_500", 7.0)]
    return [
        ("answered", {}, {}, _decision(), answered, 200, None, None),
        ("stream cut", {}, {"stream": True}, _decision(), fallback, 499, None, "client disconnected mid-stream"),
        ("paced session", {"key_id": "k1"}, {}, paced, answered, 200, None, None),
        ("responses endpoint", {"endpoint": "responses"}, {}, _decision(), fallback, 200, None, None),
        ("cascade", {}, {}, _decision(), cascade, 200, None, None),
        ("failed", {}, {}, _decision(), None, None, failed, None),
        ("refused before routing", {}, {"model": "nope"}, None, None, 400, None, None),
    ]


def written_rows() -> list[bytes]:
    """Each case through ChatService._log, as the request log stores it."""
    rows: list[bytes] = []

    class Log:
        def record(self, record):
            row = record.to_row() if hasattr(record, "to_row") else record
            rows.append(orjson.dumps(row, default=str))

    gateway = types.SimpleNamespace(request_log=Log(), learning=None, observers=[])
    runtime = types.SimpleNamespace(config=parse_config(CONFIG), version=3)
    service = pipeline.ChatService(gateway)
    real_time = pipeline.time
    pipeline.time = types.SimpleNamespace(perf_counter=lambda: 100.0123456, time=real_time.time,
                                          monotonic=real_time.monotonic)
    try:
        for _, ctx_over, chat_over, decision, result, status, error, stream_error in _cases():
            endpoint = ctx_over.pop("endpoint", None)
            ctx = pipeline.CallContext("req-1", {"model": "auto"}, 10, ts=1_700_000_000.5, started=100.0, **ctx_over)
            if endpoint:
                ctx.endpoint = pipeline.Endpoint(endpoint, "/responses")
            chat = ChatRequest.model_construct(**{"model": "auto", "messages": [], "stream": False, **chat_over})
            service._log(runtime, ctx, chat, decision, result, status, error=error, stream_error=stream_error)
    finally:
        pipeline.time = real_time
    return rows


def test_the_stored_row_is_byte_for_byte_the_one_written_before_the_typed_record():
    golden = GOLDEN.read_bytes().splitlines()
    written = written_rows()
    assert len(written) == len(golden) == len(_cases())
    for (name, *_), new, old in zip(_cases(), written, golden):
        assert new == old, name


def test_a_stored_row_reads_back_as_the_same_record():
    from router_gateway.domain.record import RequestRecord
    for row in written_rows():
        record = RequestRecord.from_row(orjson.loads(row))
        assert orjson.dumps(record.to_row(), default=str) == row


def test_every_field_before_the_optional_ones_is_in_every_row_in_field_order():
    from router_gateway.domain.record import ALWAYS, RequestRecord
    assert list(RequestRecord("req-1", 1.0).to_row()) == list(ALWAYS)


def test_rows_without_prompts_and_sql_paths_come_from_the_record():
    import pytest

    from router_gateway.domain.record import RequestRecord, json_path
    record = RequestRecord("req-9", 1.0, prompt="secret", key_id="k1")
    assert "prompt" not in record.to_row(store_prompt=False) and record.to_row()["prompt"] == "secret"
    assert json_path("key_id") == "$.key_id"
    with pytest.raises(KeyError):
        json_path("keyid")  # a typo fails loudly instead of reading NULL from every row


if __name__ == "__main__":
    sys.stdout.buffer.write(b"\n".join(written_rows()) + b"\n")
