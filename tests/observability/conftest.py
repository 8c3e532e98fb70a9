"""A real gateway (subprocess) in front of real fake experts, with OTLP traces sent to a tiny in-test
collector and an eval report directory holding a frontier plot; plus one burst of routed traffic."""
from __future__ import annotations

import http.server
import struct
import textwrap
import threading
import zlib

import openai
import pytest

from tests.support.configs import ONE_THREAD_EMBEDDER, STRONG_AND_CHEAP, ranked_experts, write_config
from tests.support.servers import start_fake_expert, start_gateway

MSG = [{"role": "user", "content": "Explain the difference between a list and a tuple in Python."}]


class Collector:
    """An OTLP/HTTP endpoint that keeps the bodies POSTed to /v1/traces."""

    def __init__(self):
        self.bodies: list[bytes] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path == "/v1/traces":
                    outer.bodies.append(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def frontier_png() -> bytes:
    """A real plot when matplotlib is there (nicer screenshot), else a small valid PNG."""
    try:
        import io

        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=90)
        ax.plot([0.1, 0.3, 0.6, 1.0], [0.55, 0.68, 0.74, 0.76], "o-", label="cluster")
        ax.plot([0.1, 1.0], [0.55, 0.76], "s--", label="cheapest / strongest")
        ax.set_xlabel("cost (USD / 1k requests)")
        ax.set_ylabel("quality")
        ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        return buf.getvalue()
    except ImportError:
        width, height = 40, 20
        raw = b"".join(b"\x00" + bytes([200, 220, 255]) * width for _ in range(height))

        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def obs_experts():
    servers = {"small": start_fake_expert("ok", "small"), "medium": start_fake_expert("slow", "medium", delay=0.15),
               "large": start_fake_expert("ok", "large"), "broken": start_fake_expert("error", "broken")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def collector():
    c = Collector()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def obs_gateway(obs_experts, collector, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("obs-gateway")
    reports = tmp / "reports" / "routerbench"
    reports.mkdir(parents=True)
    (reports / "frontier.png").write_bytes(frontier_png())
    config = write_config(tmp / "experts.yaml", ranked_experts({n: s.url for n, s in obs_experts.items()}),
                          routers=STRONG_AND_CHEAP, embedder=ONE_THREAD_EMBEDDER, profiles=textwrap.dedent("""\
          auto: {router: strong, cost_weight: 0.0, experts: [small, medium, large]}
          auto-cheap: {router: cheap, cost_weight: 1.0, experts: [small, medium, large]}
          mid: {router: strong, cost_weight: 0.0, experts: [small, medium]}
          broken-then-small: {router: strong, cost_weight: 0.0, experts: [broken, small]}
          only-broken: {router: strong, experts: [broken]}"""),
                          extra="server: {max_attempts: 3, breaker: {failure_threshold: 3, cooldown_s: 60}}")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
           "OTEL_SERVICE_NAME": "gateway-under-test", "ROUTER_GATEWAY_EVAL_REPORTS": str(tmp / "reports")}
    server = start_gateway(config, tmp, extra_args=["--log-level", "debug"], env=env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def traffic(obs_gateway):
    """A burst of routed traffic: three profiles, streams, fallbacks, then an open circuit, one failure."""
    client = openai.OpenAI(base_url=f"{obs_gateway.url}/v1", api_key="unused", max_retries=0, timeout=20)
    counts = {"auto": 12, "auto-cheap": 10, "mid": 6}
    for profile, n in counts.items():
        for i in range(n):
            if i % 3 == 0:
                list(client.chat.completions.create(model=profile, messages=MSG, stream=True,
                                                    stream_options={"include_usage": True}))
            else:
                client.chat.completions.create(model=profile, messages=MSG)
    for _ in range(5):  # the first 3 fall back from broken and open its circuit; then broken is ineligible
        client.chat.completions.create(model="broken-then-small", messages=MSG)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="only-broken", messages=MSG)
    return {**counts, "broken-then-small": 5, "only-broken": 1}
