"""Prompt embedders: the interface, its backends, micro-batching and caches."""
from router_gateway.embedding.base import Embedder, EmbedderInfo
from router_gateway.embedding.factory import make_embedder
from router_gateway.embedding.text import prompt_text

__all__ = ["Embedder", "EmbedderInfo", "make_embedder", "prompt_text"]
