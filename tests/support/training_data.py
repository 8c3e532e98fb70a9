"""Synthetic training data: a fake embedder (no model download), request logs and a benchmark table."""
from __future__ import annotations

import hashlib
import json

import numpy as np

FAKE_INFO = {"name": "fake-embedder", "dim": 8, "backend": "test"}


def fake_embed(prompts, backend="auto"):
    """Deterministic 8-d embeddings: a hash-seeded vector plus a strong 'math' direction."""
    out = []
    for p in prompts:
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(p.encode()).digest()[:8], "little"))
        v = rng.normal(size=8) + (3.0 if "math" in p else 0.0) * np.eye(8)[0]
        out.append(v / np.linalg.norm(v))
    return np.asarray(out, dtype=np.float32), dict(FAKE_INFO)


def write_logs(path, n=300, seed=0, extra_bad=True):
    """Logs from a uniform logging policy over 3 experts; 'coder' is good at math, 'big' everywhere."""
    rng = np.random.default_rng(seed)
    experts = ["small", "coder", "big"]
    lines = []
    for i in range(n):
        math_q = i % 2 == 0
        prompt = f"{'math' if math_q else 'chat'} question {i}"
        a = int(rng.integers(0, 3))
        p_good = {"small": 0.3, "coder": 0.9 if math_q else 0.2, "big": 0.8}[experts[a]]
        lines.append({"request_id": f"r{i}", "prompt": prompt, "chosen_expert": experts[a], "propensity": 1 / 3,
                      "status": 200, "cost_usd": [0.001, 0.002, 0.01][a],
                      "feedback": {"score": float(rng.random() < p_good)},
                      "candidates": [{"expert": e, "score": 0.5, "utility": 0.5} for e in experts]})
    if extra_bad:
        lines.append({"request_id": "x1", "prompt": None, "chosen_expert": "big", "status": 200, "feedback": {"score": 1}})
        lines.append({"request_id": "x2", "prompt": "hi", "chosen_expert": "big", "status": 200, "feedback": None})
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n{not json\n")
    return path


def write_table(path, n=200, seed=0):
    rng = np.random.default_rng(seed)
    rows = ["prompt,fold,task,score:small,score:big,cost:small,cost:big"]
    for i in range(n):
        math_q = i % 2 == 0
        s_small = float(rng.random() < (0.8 if math_q else 0.2))
        s_big = float(rng.random() < 0.85)
        rows.append(f"{'math' if math_q else 'chat'} item {i},{i % 5},{'math' if math_q else 'chat'},"
                    f"{s_small},{s_big},0.001,0.01")
    path.write_text("\n".join(rows) + "\n")
    return path
