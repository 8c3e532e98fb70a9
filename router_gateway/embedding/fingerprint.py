"""A cheap, path-independent fingerprint of a model's weights file, for keying derived caches."""
from __future__ import annotations

import hashlib
from pathlib import Path


def weights_fingerprint(weights: Path, edge: int = 1 << 20) -> str:
    """Size and a digest of the first and last MiB of the weights file. The same weights in another
    venv or clone map to the same cached artefact (keyed on path and mtime, every fresh checkout
    exported the onnx model again, 57 MB more in the cache, and tuned the static table again), and it
    costs ~1 ms at start-up where a full sha256 of MiniLM's 90 MB costs ~0.4 s."""
    if not weights.exists():
        return "none"
    size = weights.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with weights.open("rb") as f:
        h.update(f.read(edge))
        if size > edge:
            f.seek(max(edge, size - edge))
            h.update(f.read(edge))
    return h.hexdigest()
