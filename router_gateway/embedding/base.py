"""The embedder interface every backend implements (the factory that picks one is ``factory``).

Every backend returns L2-normalised float32 rows. ``info.name`` identifies the *model* (routers
trained with one model refuse another); ``info.backend`` records how it ran (torch, onnx, remote).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class EmbedderInfo:
    """What an artifact records about the embedder it was trained with."""

    name: str
    dim: int
    backend: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, shape (len(texts), info.dim)."""

    info: EmbedderInfo

    def embed(self, texts: list[str]) -> np.ndarray: ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows in float32 (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
