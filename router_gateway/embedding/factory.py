"""The factory that picks an embedder backend. Its own module: the backends import ``base``, and the
factory imports the backends (lazily: each pulls heavy optional dependencies)."""
from __future__ import annotations

from router_gateway.embedding.base import DEFAULT_MODEL, Embedder


def make_embedder(backend: str = "auto", *, model: str = DEFAULT_MODEL, threads: int | None = None,
                  url: str | None = None, api_key: str | None = None, dim: int | None = None) -> Embedder:
    """Build an embedder. ``auto`` prefers onnxruntime (torch-free, faster) and falls back to torch."""
    if backend == "remote":
        from router_gateway.embedding.remote import RemoteEmbedder
        if not url:
            raise ValueError("remote embedder needs a url")
        return RemoteEmbedder(url=url, model=model, api_key=api_key, dim=dim)
    if backend == "static":  # distilled model2vec-style table: its own model name, routers retrain on it
        from router_gateway.embedding.static_backend import StaticEmbedder
        return StaticEmbedder(model=model, threads=threads)
    if backend == "static-tuned":  # the static lookup over a table mapped into MiniLM's space
        from router_gateway.embedding.tuned_static import make_tuned_static
        return make_tuned_static(model=model)
    if backend in ("onnx", "auto"):
        try:
            from router_gateway.embedding.onnx_backend import OnnxEmbedder
            return OnnxEmbedder(model=model, threads=threads)
        except Exception as exc:  # auto: missing onnxruntime, or no ONNX file and no way to export it
            if backend == "onnx":
                raise
            import logging
            logging.getLogger("router_gateway.embedding").warning(
                "onnx embedder unavailable (%s: %s); using the torch backend", type(exc).__name__, exc)
    if backend in ("torch", "auto"):
        from router_gateway.embedding.torch_backend import TorchEmbedder
        return TorchEmbedder(model=model, threads=threads)
    raise ValueError(f"unknown embedder backend {backend!r} (torch, onnx, static, static-tuned, remote, auto)")
