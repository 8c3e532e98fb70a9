"""Schemathesis against the gateway's OpenAPI schema, over HTTP, in front of healthy fake experts:
any 5xx is then a gateway bug (a 502/503/504 from a failing expert would be legitimate, so none fail
here). Also: no hang (every call bounded), at least 1,000 generated requests in total.

A random ``model`` is almost always unknown (404 before routing), so each generated body is also sent
with ``model`` set to each real profile and expert, and each generated feedback with a real request
id: the same generated content then reaches routing, forwarding and the log. (Generating a case costs
~0.1 s of CPU, sending it ~10 ms: variants buy depth without making the suite slow.)

Hostile variants go beyond the schema: ``stream_options`` drawn from any JSON value (the schema says
object or null), and a field nested 3 to 500 levels deep (orjson decodes 1,024 levels but encodes
254; the gateway refuses more than MAX_JSON_DEPTH with a 400) on chat, route and feedback."""
from __future__ import annotations

from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from router_gateway.api.json_depth import MAX_JSON_DEPTH
from tests.support.configs import ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, served_experts, write_config
from tests.support.servers import start_gateway

COUNTS: Counter = Counter()
STATUSES: Counter = Counter()


@pytest.fixture(scope="module")
def fuzz_gateway(experts, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    spec = {"good": {"url": experts["good"].url, "prior": 0.6, "context_window": 1 << 20},
            "good2": {"url": experts["good2"].url, "prior": 0.5, "context_window": 1 << 20}}
    profiles = {"auto": "{router: strong, cost_weight: 0.5}", "auto-cheap": "{router: cheap, max_messages: 8}"}
    config = write_config(tmp / "experts.yaml", served_experts(spec), profiles=profiles,
                          routers=STRONG_AND_CHEAP, embedder=ONE_THREAD_EMBEDDER, server={"max_body_bytes": 262144})
    server = start_gateway(config, tmp)
    answer = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "auto", "messages": [
        {"role": "user", "content": "hi"}]})
    server.known_request_id = answer.headers["x-request-id"]
    yield server
    server.stop()


EXAMPLES = 90
MODELS = ("auto", "auto-cheap", "good", "good2")
NO_BODY = object()


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=8)
#: stream_options of any JSON shape (mostly not the object the schema asks for), and a nesting depth
HOSTILE = st.tuples(JSON_VALUES | st.dictionaries(st.just("include_usage"), JSON_VALUES),
                    st.sampled_from([3, 64, MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 200, 254,
                                     255, 300, 500]))


def nested(depth: int):
    value = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def variants(body, path: str, request_id: str, hostile: tuple):
    """The generated body, then copies aimed past the unknown-model / unknown-request-id answers, then
    hostile copies: ``(body, depth of its deepest field or 0)``."""
    yield (body if body is not None else NO_BODY), 0
    if not isinstance(body, dict):
        return
    stream_options, depth = hostile
    if path == "/v1/feedback":
        yield {**body, "request_id": request_id}, 0
        yield {**body, "request_id": request_id, "extra": nested(depth)}, depth + 1
    elif path in ("/v1/chat/completions", "/v1/route"):
        for model in MODELS:
            yield {**body, "model": model}, 0
        yield {**body, "model": MODELS[0], "stream_options": stream_options}, 0
        yield {**body, "model": MODELS[0], "metadata": nested(depth)}, depth + 1


def legitimate(response) -> bool:
    """Below 500; or the one documented 5xx a well-formed request can earn in front of healthy
    experts: 503 when it asks for more tokens than any expert's context window holds."""
    if response.status_code < 500:
        return True
    error = response.json().get("error", {})
    return response.status_code == 503 and "context window" in error.get("message", "")


def test_gateway_survives_generated_requests(fuzz_gateway):
    # driven by hand rather than schemathesis' pytest plugin, which does not run under pytest 9
    schema = schemathesis.openapi.from_url(f"{fuzz_gateway.url}/openapi.json")
    # reload is exercised by the hostile-config test; fuzzing it would only rebuild the same config
    schema = schema.exclude(path="/admin/reload")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"/v1/chat/completions", "/v1/route", "/v1/feedback"} <= {op.path for op in operations}
    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.generate], database=None)
        @given(operation.as_strategy(), HOSTILE)
        def fuzz(case, hostile):
            for body, depth in variants(case.body, case.path, fuzz_gateway.known_request_id, hostile):
                if body is not NO_BODY:
                    case.body = body
                response = case.call(base_url=fuzz_gateway.url, timeout=15)  # a hang fails as a timeout
                COUNTS[f"{case.method} {case.path}"] += 1
                STATUSES[response.status_code] += 1
                assert legitimate(response), (case.method, case.path, str(case.body)[:2000],
                                              response.status_code, response.text[:500])
                if depth > MAX_JSON_DEPTH:
                    assert response.status_code == 400, (case.path, depth, response.text[:500])
                if response.status_code >= 400:
                    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        fuzz()


def test_fuzz_volume(fuzz_gateway):
    total = sum(COUNTS.values())
    print(f"\nschemathesis {schemathesis.__version__}: {total} requests; per operation {dict(COUNTS)}; "
          f"statuses {dict(sorted(STATUSES.items()))}")
    assert total >= 1000
    assert fuzz_gateway.proc.poll() is None and "Traceback" not in fuzz_gateway.log_text()
