"""Smoke tests of the benchmark parts: stub expert, load generator, summaries, report, and a quick
end-to-end ``router-gateway bench`` run. No timing thresholds: timings do not belong in tests."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from eval.bench import procs
from eval.bench.procs import Proc, python_module

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    port = procs.free_port()
    proc = Proc("stub", python_module("eval.bench.stub_expert", "--port", str(port), "--chunks", "5"),
                tmp_path_factory.mktemp("stub"))
    try:
        proc.wait_ready(f"http://127.0.0.1:{port}/health", 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def test_stub_plain_answer_through_the_openai_client(stub):
    client = openai.OpenAI(base_url=stub + "/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    assert answer.model == "m1" and answer.usage.completion_tokens == 5
    assert [m.id for m in client.models.list()] == ["stub-model"]


def test_stub_stream_with_usage_through_the_openai_client(stub):
    client = openai.OpenAI(base_url=stub + "/v1", api_key="x", max_retries=0)
    chunks = list(client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 5
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    no_usage = list(client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}],
                                                   stream=True))
    assert all(c.usage is None for c in no_usage)


@pytest.mark.parametrize("stream", [False, True])
def test_load_generator_against_the_stub(stub, stream):
    from eval.bench.loadgen import run_load, summarise

    result = asyncio.run(run_load(stub + "/v1/chat/completions", "m", concurrency=4, duration=0,
                                  stream=stream, requests=40, warmup=1))
    summary = summarise(result, 4, stream)
    assert summary["errors"] == {} and summary["n"] >= 30
    assert summary["p50"] > 0 and summary["p99"] >= summary["p50"]
    assert ("ttft_p50" in summary) == stream


def test_load_generator_cli_prints_json(stub):
    out = subprocess.run(python_module("eval.bench.loadgen", "--url", stub + "/v1/chat/completions",
                                       "--concurrency", "2", "--duration", "0.3"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n"] > 0


def _fake_raw():
    rows = []
    for r in range(2):
        for stream in (False, True):
            for c in (1, 32, 128):
                for target, extra in (("direct", 0.0), ("passthrough", 1.0), ("routed", 3.0), ("litellm", 6.0)):
                    row = {"round": r, "stream": stream, "concurrency": c, "target": target, "rps": 100.0,
                           "p50": 20 + extra, "p99": 25 + 2 * extra, "cpu_s": 0.1,
                           "cpu_s_servers": {"stub": 0.1, "gateway-1w": 0.9}}
                    if stream:
                        row.update(ttft_p50=1 + extra, ttft_p99=2 + extra)
                    rows.append(row)
    return {"latency": rows}


def test_summaries_and_markdown_from_raw_figures():
    from eval.bench.report import render_markdown
    from eval.bench.runner import stub_cpu_share, summarise

    out = summarise(_fake_raw(), ["passthrough", "routed", "litellm"], (1, 32, 128))
    assert out["added_ms"]["passthrough"]["c32"] == {"p50": 1.0, "p99": 2.0}
    assert out["added_ms"]["litellm"]["c128"]["p99"] == 12.0
    assert out["ttft_added_ms"]["passthrough"]["p50"] == 1.0
    assert 0 < stub_cpu_share(_fake_raw()) < 1
    table = render_markdown({**out, "meta": {"runs": 2}, "rps": {"passthrough": 200.0, "litellm": 50.0}})
    assert table.startswith("| figure | measured | target |")
    assert "| 1.00 ms / 2.00 ms |" in table and "(4.00 x)" in table


def test_markdown_shows_the_other_embedders_decision_but_not_the_deployed_one_twice():
    from eval.bench.report import render_markdown

    data = {"meta": {"embedder": "onnx"}, "route_decision_ms": {"p50": 38.0, "p99": 50.0},
            "route_decision_ms_by_embedder": {"onnx": {"p50": 38.0, "p99": 50.0},
                                              "static": {"p50": 1.25, "p99": 1.75}}}
    table = render_markdown(data)
    assert "static embedder instead, ~200-token prompt (p50 / p99) | 1.25 ms / 1.75 ms |" in table
    assert "onnx embedder instead" not in table
    assert "embedder `onnx`" in table


def test_worker_speedup_is_the_median_of_per_round_ratios():
    from eval.bench.runner import paired_ratio
    raw = [{"round": r, "target": "routed", "gateway": g, "rps": rps}
           for r, (one, two) in enumerate([(500, 900), (400, 800), (600, 600)])
           for g, rps in (("one", one), ("two", two))]
    raw.append({"round": 3, "target": "routed", "gateway": "two", "rps": 10.0})  # unpaired: ignored
    raw.append({"round": 0, "target": "passthrough", "gateway": "two", "rps": 1.0})  # other target
    assert paired_ratio(raw, "routed", "two", "one") == 1.8  # ratios 1.8, 2.0, 1.0


def test_other_embedders_never_lists_the_deployed_one():
    from eval.bench.runner import other_embedders

    assert "static" not in other_embedders("static")
    assert other_embedders("static")[0] == "onnx"
    assert "onnx" not in other_embedders("onnx")


def _gateway_importable() -> bool:
    try:
        import router_gateway.app  # noqa: F401
        import router_gateway.commands.serve  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _gateway_importable(), reason="the gateway app is not importable yet")
def test_quick_bench_end_to_end_writes_every_key(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    run = subprocess.run([sys.executable, "-m", "router_gateway.cli", "bench", "--quick", "--no-litellm",
                          "--json", str(out), "--markdown", str(md)], capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    data = json.loads(out.read_text())
    for target in ("passthrough", "routed", "litellm"):
        for c in (1, 32, 128):
            assert set(data["added_ms"][target][f"c{c}"]) >= {"p50", "p99"}
        assert target in data["rps"]
    assert data["added_ms"]["passthrough"]["c1"]["p50"] is not None
    for key in ("ttft_added_ms", "route_decision_ms", "rss_mb", "cold_start_s", "rps_routed_2_workers",
                "stub_cpu_share"):
        assert key in data
    assert data["ttft_added_ms"]["passthrough"]["p50"] is not None
    assert {"p50", "p99"} <= set(data["route_decision_ms"])
    assert data["rss_mb"] > 0 and data["cold_start_s"] > 0
    assert data["workers_speedup"]["routed"] > 0 and data["rps_routed_1_worker_paired"] > 0
    assert md.read_text().startswith("| figure |")


@pytest.mark.slow
@pytest.mark.skipif(not _gateway_importable(), reason="the gateway app is not importable yet")
def test_code_ab_runs_two_versions_side_by_side(tmp_path):
    """The side-by-side bench (eval/bench/code_ab.py): HEAD in a worktree against the working tree,
    one short round; the new version reports how many prompts shared each kNN call."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "ab.json"
    run = subprocess.run([sys.executable, "-m", "eval.bench.code_ab", "--base", "HEAD", "--embedder", "onnx",
                          "--rounds", "1", "--duration", "1", "--saturation-s", "1", "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    data = json.loads(out.read_text())
    assert data["router"] == "knn" and len(data["rounds"]) == 1
    for name in ("base", "new"):
        row = data["rounds"][0][name]
        assert row["saturation_rps"] > 0 and row["saturation_errors"] == {}
        assert row["cpu_ms_per_request"] > 0
    batches = data["score_batches"]["new"]
    assert batches["prompts"] >= batches["calls"] > 0
    listed = subprocess.run(["git", "worktree", "list"], capture_output=True, text=True).stdout
    assert "router-gateway-ab-" not in listed  # the worktree is removed again
