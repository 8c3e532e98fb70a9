"""Routing algorithms: map prompt embeddings to a quality estimate per expert.

Pure numpy / scikit-learn / torch. Never imports router_gateway or fastapi.
"""
from routers.base import Router, RouterError
from routers.registry import available_routers, make_router

__all__ = ["Router", "RouterError", "available_routers", "make_router"]
