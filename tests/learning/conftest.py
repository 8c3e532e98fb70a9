"""Fixtures shared by the learning tests."""
from __future__ import annotations

import pytest

from tests.support.servers import start_redis


@pytest.fixture
def redis_url():
    """A real redis-server on a free loopback port, for the tests of several replicas."""
    server = start_redis()
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()
