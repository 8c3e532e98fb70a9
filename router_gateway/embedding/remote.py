"""An OpenAI-compatible ``/v1/embeddings`` endpoint as the embedder (e.g. a shared embedding server)."""
from __future__ import annotations

import httpx
import numpy as np

from router_gateway.embedding.base import EmbedderInfo, normalise


class RemoteEmbedder:
    """Calls ``POST {url}/embeddings``; the dimension is probed once if not configured."""

    def __init__(self, url: str, model: str, api_key: str | None = None, dim: int | None = None,
                 timeout: float = 10.0, transport: httpx.BaseTransport | None = None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout,
                                    transport=transport)
        self._model = model
        dim = dim or int(self._request(["dimension probe"]).shape[1])
        self.info = EmbedderInfo(name=model, dim=dim, backend="remote")

    def _request(self, texts: list[str]) -> np.ndarray:
        response = self._client.post("/embeddings", json={"model": self._model, "input": texts})
        response.raise_for_status()
        data = sorted(response.json()["data"], key=lambda item: item["index"])
        return normalise(np.asarray([item["embedding"] for item in data], dtype=np.float32))

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        return self._request(texts)
