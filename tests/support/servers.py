"""Start real servers on free loopback ports for integration tests, and stop them."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts_connections(port: int) -> bool:
    """Whether something listens on the loopback port (a TCP connect succeeds; nothing is sent)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None,
              ok=lambda r: r.status_code < 500) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            if ok(httpx.get(url, timeout=1.0)):
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s ({last})")


class Server:
    """A subprocess server; ``stop()`` sends SIGTERM then SIGKILL."""

    def __init__(self, args: list[str], port: int, env: dict | None = None, log: Path | None = None):
        self.port = port
        self.log_path = log
        out = open(log, "wb") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out,
                                     stderr=subprocess.STDOUT if log else subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


def start_fake_expert(behaviour: str = "ok", name: str = "fake", delay: float = 0.5) -> Server:
    port = free_port()
    server = Server([sys.executable, "-m", "tests.support.fake_expert", "--port", str(port),
                     "--behaviour", behaviour, "--name", name, "--delay", str(delay)], port)
    wait_http(f"{server.url}/_stats", 30, server.proc)
    return server


def start_gateway(config_path: Path, tmp: Path, extra_args: list[str] | None = None,
                  env: dict | None = None, wait: bool = True, port: int | None = None) -> Server:
    """A gateway process; ``wait=False`` returns at once (start several, then ``wait_gateway`` each)."""
    port = port or free_port()
    server = Server([sys.executable, "-m", "router_gateway.cli", "serve", "--config", str(config_path),
                     "--port", str(port), *(extra_args or [])], port,
                    env={"ROUTER_GATEWAY_HOME": str(tmp), **(env or {})}, log=tmp / f"gateway-{port}.log")
    if wait:
        wait_gateway(server)
    return server


def wait_gateway(server: Server) -> Server:
    try:
        wait_http(f"{server.url}/health", 90, server.proc)
    except Exception:
        print(server.log_text()[-4000:])
        raise
    return server


def start_redis(port: int | None = None) -> Server:
    """A throw-away redis-server (no persistence) on a free loopback port."""
    import shutil
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    server = Server([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                    port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise TimeoutError("redis-server did not start")


def set_behaviour(server: Server, behaviour: str, **extra) -> None:
    """Switch a running fake expert (tests/support/fake_expert.py) to another behaviour."""
    httpx.post(f"{server.url}/_behaviour", json={"behaviour": behaviour, **extra}).raise_for_status()
