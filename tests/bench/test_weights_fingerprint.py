"""Derived embedding caches (onnx export, tuned static table) are keyed by the weights, not their path."""
from pathlib import Path

from router_gateway.embedding.fingerprint import weights_fingerprint
from router_gateway.embedding.onnx_backend import onnx_path_for


def _model_dir(root: Path, payload: bytes) -> Path:
    root.mkdir(parents=True)
    (root / "model.safetensors").write_bytes(payload)
    return root


def test_same_weights_in_another_checkout_share_the_cached_export(tmp_path):
    payload = bytes(range(256)) * 20_000  # 5 MB: both ends and the size are read
    a = _model_dir(tmp_path / "venv-a" / "model", payload)
    b = _model_dir(tmp_path / "venv-b" / "model", payload)
    assert onnx_path_for(a) == onnx_path_for(b)


def test_changed_weights_get_a_new_export(tmp_path):
    payload = bytearray(bytes(range(256)) * 20_000)
    a = _model_dir(tmp_path / "a" / "model", bytes(payload))
    payload[-1] ^= 0xFF  # a change at the end of the file
    b = _model_dir(tmp_path / "b" / "model", bytes(payload))
    c = _model_dir(tmp_path / "c" / "model", bytes(payload) + b"x")  # a change in size
    assert len({onnx_path_for(a), onnx_path_for(b), onnx_path_for(c)}) == 3
    assert weights_fingerprint(tmp_path / "missing") == "none"
