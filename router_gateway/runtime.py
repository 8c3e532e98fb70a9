"""One config version: the routing and forwarding built from it, and how many requests still use it.

A request acquires the current Runtime and releases it when it ends (its stream included), so a reload
can retire a version and close its connections only when the last request on it has finished.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from router_gateway.domain.config import GatewayConfig
from router_gateway.forwarding.forwarder import Forwarder
from router_gateway.routing.service import RoutingService


@dataclass
class Runtime:
    """One config version: everything that is rebuilt on reload."""

    version: int
    config: GatewayConfig
    routing: RoutingService
    forwarder: Forwarder
    active: int = 0
    retired: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)
