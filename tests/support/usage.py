"""What the gateways' shared state (Redis) holds for an API key: read from a test to wait for settling."""
from __future__ import annotations

import time

import redis

from router_gateway.state.limits import periods


def settled_spend(redis_url: str, key_id: str, prefix: str = "rg:") -> float | None:
    """The key's spend today once every hold of it has been replaced by its usage; None while a request's
    hold is still outstanding. The key names are the shared limiter's (state/limits.py ``_keys``)."""
    client = redis.Redis.from_url(redis_url)
    try:
        if client.hlen(f"{prefix}held:{key_id}"):
            return None
        day = periods(time.time())[0]
        return float(client.get(f"{prefix}spend:{key_id}:{day}") or 0.0)
    finally:
        client.close()
