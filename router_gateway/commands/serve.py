"""``router-gateway serve``: run the gateway with uvicorn (one or more worker processes)."""
from __future__ import annotations

import argparse
import os
import sys

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="run the gateway")
    p.add_argument("--config", default="experts.yaml", help="path of experts.yaml (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the port")
    p.add_argument("--allow-public-without-keys", action="store_true",
                   help="bind a non-loopback address even though no API keys are configured")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run)


def app_factory():
    """Uvicorn factory (used with --workers): config path comes from the environment."""
    from pathlib import Path

    from router_gateway.app import create_app
    from router_gateway.container import GatewayOptions
    return create_app(GatewayOptions(config_path=Path(os.environ["ROUTER_GATEWAY_CONFIG"]),
                                     redis_url=os.environ.get("REDIS_URL") or None))


#: numpy's BLAS pool sized to one thread in the serving process. The gateway's numpy work is
#: per-prompt (a 1 x d by d x n kNN product): threaded BLAS made it no faster but its spinning threads
#: doubled the CPU per routing decision (bench: 80 -> 45 ms CPU for a 200-token prompt with onnx)
#: and competed with the event loop and the other workers. Set before numpy is first imported;
#: an operator's own setting wins. The embedder's threads are set in experts.yaml (embedder.threads).
#: (numpy's wheels ship OpenBLAS; OMP_NUM_THREADS is left alone: torch sizes its pool from it.)
SERVING_THREAD_ENV = ("OPENBLAS_NUM_THREADS",)


def run(args: argparse.Namespace) -> int:
    for name in SERVING_THREAD_ENV:
        os.environ.setdefault(name, "1")
    from pathlib import Path

    import uvicorn

    from router_gateway.domain.config import load_config
    from router_gateway.domain.config_yaml import ConfigError
    from router_gateway.observability.logging_setup import configure_logging

    try:
        config = load_config(args.config)  # fail at boot, before binding, with the config's own message
    except ConfigError as exc:
        print(f"router-gateway: config refused:\n{exc}", file=sys.stderr)
        return 1
    if args.host not in LOOPBACK and not args.allow_public_without_keys and not _keys_configured(args.config):
        print(f"router-gateway: refusing to bind {args.host} with no API keys configured; create keys with "
              "'router-gateway keys create' or pass --allow-public-without-keys", file=sys.stderr)
        return 1
    configure_logging(args.log_level)
    os.environ["ROUTER_GATEWAY_CONFIG"] = str(Path(args.config).resolve())
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # workers write their metrics to files in a fresh directory; /metrics sums them (observability.metrics)
        import atexit
        import shutil
        import tempfile
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="router-gateway-metrics-")
        atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    uvicorn.run("router_gateway.commands.serve:app_factory", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level, access_log=False,
                # SIGTERM: stop accepting, let streams in flight finish within the drain timeout,
                # then the lifespan's shutdown flushes the request log
                timeout_graceful_shutdown=max(1, int(config.server.drain_timeout_s + 0.999)), log_config=None,
                # idle keep-alive longer than clients' pools (httpx: 5 s, the same as uvicorn's default):
                # otherwise the server closes a connection just as a client reuses it and the request fails
                timeout_keep_alive=75,
                # httptools plus limits on request header size and read time (server.max_header_bytes,
                # server.request_read_timeout_s): uvicorn's httptools protocol has neither
                http="router_gateway.api.http_server:BoundedHttpToolsProtocol")
    return 0


def _keys_configured(config_path: str) -> bool:
    from router_gateway.state.keys import KeyStore
    return KeyStore.default(config_path).required  # a keys file exists (if unusable, the gateway fails closed)
