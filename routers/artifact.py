"""Router artifacts: a directory with ``arrays.npz`` and ``meta.json``.

Loading never executes code from the artifact: arrays are read with ``allow_pickle=False`` and the
router class comes from the registry by its declared type.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from routers.base import Router, RouterError
from routers.registry import router_class

META = "meta.json"
ARRAYS = "arrays.npz"
FORMAT_VERSION = 1


def save_artifact(router: Router, directory: str | Path, *, embedder: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> Path:
    """Write ``router`` to ``directory`` atomically (write to a temp dir, then rename)."""
    router.check_fitted()
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    arrays = router.state_arrays()
    np.savez(tmp / ARRAYS, **arrays)
    meta = {
        "format_version": FORMAT_VERSION,
        "router_type": router.router_type,
        "params": router.get_params(),
        "experts": list(router.experts_),
        "n_features": int(router.n_features_in_),
        "embedder": embedder,
        "arrays_sha256": _sha256(tmp / ARRAYS),
        **(extra or {}),
    }
    (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default))
    if directory.exists():
        # swap: move the old artifact aside, move the new one in, then delete the old one
        old = directory.with_name(f".{directory.name}.old")
        _rmtree(old)
        os.replace(directory, old)
        os.replace(tmp, directory)
        _rmtree(old)
    else:
        os.replace(tmp, directory)
    return directory


def read_meta(directory: str | Path) -> dict[str, Any]:
    """Read and sanity-check an artifact's meta.json."""
    path = Path(directory) / META
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise RouterError(f"{path} not found: not a router artifact") from None
    except json.JSONDecodeError as exc:
        raise RouterError(f"{path} is not valid JSON: {exc}") from None
    for key in ("router_type", "params", "experts", "n_features", "embedder"):
        if key not in meta:
            raise RouterError(f"{path} lacks {key!r}")
    return meta


def load_artifact(directory: str | Path) -> tuple[Router, dict[str, Any]]:
    """Load a router artifact; returns (router, meta)."""
    meta = read_meta(directory)
    arrays_path = Path(directory) / ARRAYS
    if meta.get("arrays_sha256") and _sha256(arrays_path) != meta["arrays_sha256"]:
        raise RouterError(f"{arrays_path} does not match the digest in meta.json (corrupt or edited)")
    with np.load(arrays_path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    cls = router_class(meta["router_type"])
    router = cls.from_state(meta["params"], meta["experts"], meta["n_features"], arrays)
    return router, meta


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _rmtree(path: Path) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)
