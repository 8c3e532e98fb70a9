"""Process lifecycle under load: SIGKILL loses at most the last flush interval's log records and
leaves a readable log; SIGTERM stops accepting, lets streams in flight finish, flushes the log."""
from __future__ import annotations

import signal
import sqlite3
import threading
import time

import httpx
import orjson
import pytest

from router_gateway.state.request_log import count_records
from tests.support.configs import ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, served_experts, write_config
from tests.support.polling import wait_for
from tests.support.servers import accepts_connections, start_fake_expert, start_gateway

MSG = [{"role": "user", "content": "hello"}]
FLUSH_S = 0.05  # logging.flush_interval_ms of tests/support/configs.py write_config
#: a record is "owed" once its response was fully received this long before the kill: one flush
#: interval plus scheduling slack for a loaded 2-core machine
KILL_MARGIN_S = FLUSH_S + 0.25


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lifecycle")
    fast = start_fake_expert("ok", "fast")
    slow = start_fake_expert("slowstream", "slow", delay=0.4)  # ~1.6 s per stream
    spec = {"fast": {"url": fast.url, "prior": 0.9}, "slow": {"url": slow.url, "prior": 0.5}}
    profiles = {"auto": "{router: strong, cost_weight: 0, experts: [fast]}",
                "drip": "{router: strong, cost_weight: 0, experts: [slow]}"}
    config = write_config(tmp / "experts.yaml", served_experts(spec), profiles=profiles,
                          routers=STRONG_AND_CHEAP, embedder=ONE_THREAD_EMBEDDER, server={"drain_timeout_s": 10})
    yield config, tmp
    fast.stop()
    slow.stop()


def test_sigkill_under_load_loses_at_most_the_last_flush_interval(setup):
    config, tmp = setup
    gw = start_gateway(config, tmp)
    done: list[tuple[str, float]] = []  # (request id, time the answer was fully received)
    stop = threading.Event()

    def worker():
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    r = client.post(f"{gw.url}/v1/chat/completions", json={"model": "auto", "messages": MSG})
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    done.append((r.headers["x-request-id"], time.monotonic()))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    killed_at = time.monotonic()
    gw.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()
    db_path = tmp / "requests.db"
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    logged = {row[0] for row in db.execute("SELECT request_id FROM requests")}
    db.close()
    owed = [rid for rid, at in done if at < killed_at - KILL_MARGIN_S]
    missing = [rid for rid in owed if rid not in logged]
    assert len(done) > 50 and not missing, f"{len(missing)} of {len(owed)} owed records missing"
    lost = len([rid for rid, _ in done if rid not in logged])
    print(f"\nSIGKILL: {len(done)} answered, {len(logged)} logged, {lost} lost (all within the last "
          f"{KILL_MARGIN_S:.2f} s)")
    # the restarted gateway appends to the same log
    gw2 = start_gateway(config, tmp)
    try:
        assert httpx.post(f"{gw2.url}/v1/chat/completions", json={"model": "auto", "messages": MSG}).status_code == 200
    finally:
        gw2.stop()
    assert count_records(db_path) == len(logged) + 1


def test_sigterm_drains_streams_in_flight_and_flushes_the_log(setup):
    config, tmp = setup
    gw = start_gateway(config, tmp)
    before = count_records(tmp / "requests.db")
    results: list[dict] = []
    started = threading.Barrier(9)

    def stream():
        body = {"model": "drip", "messages": MSG, "stream": True}
        events = []
        with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()
            first = next(lines)
            started.wait()
            events = [first, *lines]
        data = [e[6:] for e in events if e.startswith("data: ")]
        results.append({"done": data[-1] == "[DONE]",
                        "text": "".join(c["delta"].get("content") or "" for d in data[:-1]
                                        for c in orjson.loads(d).get("choices", []))})

    threads = [threading.Thread(target=stream) for _ in range(8)]
    for t in threads:
        t.start()
    started.wait(timeout=20)  # every stream has its first byte
    t0 = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: not accepts_connections(gw.port), timeout=5)  # it closed its listening socket
    with pytest.raises(httpx.HTTPError):  # no longer accepting
        httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "auto", "messages": MSG}, timeout=2)
    for t in threads:
        t.join(20)
    assert gw.proc.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
    assert time.monotonic() - t0 < 10  # within server.drain_timeout_s
    assert len(results) == 8 and all(r["done"] and r["text"].strip() == "answer from slow" for r in results), results
    assert count_records(tmp / "requests.db") == before + 8  # flushed on the way out
