"""In-process gateways with an API key store: built on demand, so a test can create keys first."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from fastapi.testclient import TestClient

from router_gateway.app import create_app
from router_gateway.container import GatewayOptions
from router_gateway.domain.config import parse_config
from router_gateway.state.keys import KeyStore
from tests.support.fakes import HashEmbedder


@contextmanager
def keyed_gateways(tmp_path: Path, config_text: str, connect: Callable) -> Iterator[tuple[Callable, KeyStore]]:
    """(client factory, key store). ``config_text`` names the request log as LOG; ``connect()`` makes
    each app's fake upstream. Every client made is closed on exit."""
    store = KeyStore(tmp_path / "keys.json")
    config = parse_config(config_text.replace("LOG", str(tmp_path / "log.db")))
    clients = []

    def make() -> TestClient:
        app = create_app(GatewayOptions(config=config, connect=connect(), embedder=HashEmbedder(),
                                        health_interval_s=0, watch_config=False, keys_path=store.path))
        client = TestClient(app).__enter__()
        clients.append(client)
        return client
    try:
        yield make, store
    finally:
        for client in clients:
            client.__exit__(None, None, None)
