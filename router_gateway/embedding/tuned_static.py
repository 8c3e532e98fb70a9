"""The tuned static embedder (backend ``static-tuned``): the static token table mapped into MiniLM's space.

Serving is exactly the ``static`` backend's (tokenise, look up rows, mean, L2-normalise: well under
a millisecond for 200 tokens, numpy + tokenizers only); only the table differs. The isolated-token
table (each word piece's MiniLM vector alone, SIF-weighted, 384 dims) is moved by one affine map,
fitted by ridge regression so that each prompt's mean row lands on MiniLM's sentence embedding of
that prompt (``static_tuning.linear_start``), over a corpus of real prompts: every prompt under a
data directory, de-duplicated. Point it at the prompts the routers are trained on: fitted on all of
``../shared/data`` (59k, mostly other distributions) the map routed worse than fitted on the routing
table's own training prompts (eval/static_tuned_report.md, second session).
A mean of mapped rows is the map of the mean, so the table *is* "static embedding, then a learned
linear map", at no serving cost. Why a map and not per-token training: cross-fitted on llmrouter,
the map keeps more routing auc (per-token training memorises its corpus), see
eval/static_tuned_report.md.

The build needs torch (the isolated-token vectors, ~1 min) and MiniLM embeddings of the corpus,
read from / written to the shared on-disk embedding cache (onnx int8 by default, the serving
model; ``--targets torch`` shares the cache that ``train`` and ``eval`` fill):

    python -m router_gateway.embedding.tuned_static ../shared/data

The table is cached as ``$ROUTER_GATEWAY_CACHE/static/<model>-tuned-<key>.npy`` (float16, 384
dims, 23 MB) with a ``.json`` beside it (corpus size and digest, seconds per step); the gateway
never builds it at start-up (minutes), it says which command to run.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from router_gateway.embedding import static_tuning
from router_gateway.embedding.base import DEFAULT_MODEL
from router_gateway.embedding.fingerprint import weights_fingerprint
from router_gateway.embedding.static_backend import (
    model_dir_for,
    post_process,
    static_cache_dir,
    token_vectors,
)

#: word pieces per prompt, as MiniLM sees (its max_seq_length is 256 with [CLS] and [SEP])
MAX_TOKENS = 254
#: ridge of the affine map (relative to the corpus size; chosen on cross-fitted auc)
RIDGE = 1e-4
#: bump when the recipe changes (the name routers record changes with it)
RECIPE = f"tuned-v1|init-isolated-sif384|max{MAX_TOKENS}|affine-ridge{RIDGE}"
NAME_SUFFIX = "-static-tuned"
BUILD_COMMAND = "python -m router_gateway.embedding.tuned_static ../shared/data"


class TunedTableMissing(RuntimeError):
    """The tuned table has not been built on this machine."""


def _model_key(model_dir: Path) -> str:
    """Recipe + the model files' fingerprints (size and the ends of the file, not a full sha256: hashing
    MiniLM's 90 MB of weights cost ~0.4 s of every gateway start; the onnx export is keyed the same way)."""
    h = hashlib.sha256(RECIPE.encode())
    for name in ("model.safetensors", "pytorch_model.bin", "tokenizer.json"):
        path = model_dir / name
        if path.exists():
            h.update(f"{name}|{weights_fingerprint(path)}".encode())
    return h.hexdigest()[:16]


def tuned_table_path(model: str = DEFAULT_MODEL) -> Path:
    """Where the tuned table of ``model`` lives (keyed by the weights and the recipe, not the corpus)."""
    model_dir = model_dir_for(model)
    return static_cache_dir() / f"{model_dir.name}-tuned-{_model_key(model_dir)}.npy"


# -- the corpus ----------------------------------------------------------------------------------
def _csv_column(path: Path, column: str) -> list[str]:
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return [row[column] for row in reader if column in row and row[column]] \
            if column in (reader.fieldnames or []) else []


def _json_texts(node) -> list[str]:
    """Every string under the keys that hold prompts in the domain sets' JSON files."""
    if isinstance(node, dict):
        out = []
        for key, value in node.items():
            if key in ("question", "text", "prompt", "exemplars", "turns") and isinstance(value, str):
                out.append(value)
            elif key in ("exemplars", "turns") and isinstance(value, list):
                out.extend(v for v in value if isinstance(v, str))
            else:
                out.extend(_json_texts(value))
        return out
    if isinstance(node, list):
        if len(node) == 2 and isinstance(node[0], str) and isinstance(node[1], str):  # clinc: [text, intent]
            return [node[0]]
        return [t for item in node for t in _json_texts(item)]
    return []


def corpus_prompts(data_dir: str | Path) -> list[str]:
    """Every prompt under ``data_dir``: the ``prompt`` column of bench tables and domain CSVs, the
    ``text`` column of labelled CSVs, and questions/utterances in JSON/JSONL files. De-duplicated,
    in a stable order (sorted file paths)."""
    data_dir = Path(data_dir)
    texts: list[str] = []
    for path in sorted(data_dir.rglob("*")):
        if path.suffix == ".csv" and not path.name.endswith(".models.csv"):
            texts += _csv_column(path, "prompt") or _csv_column(path, "text")
        elif path.suffix == ".json" and path.parent.name != "routerarena":
            texts += _json_texts(json.loads(path.read_text(encoding="utf-8")))
        elif path.name == "question.jsonl":  # MT-Bench questions (the other JSONL files are answers)
            for line in path.read_text(encoding="utf-8").splitlines():
                texts += _json_texts(json.loads(line)) if line.strip() else []
    seen: set[str] = set()
    # texts are kept byte for byte: the embedding cache is keyed by the exact text
    return [t for t in texts if t.strip() and not (t in seen or seen.add(t))]


# -- the build -----------------------------------------------------------------------------------
def encode_all(tokenizer_path: Path, prompts: list[str]) -> list[list[int]]:
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_TOKENS)
    return [e.ids for e in tok.encode_batch(prompts, add_special_tokens=False)]


def build_tuned_table(data_dir: str | Path, model: str = DEFAULT_MODEL, targets: str = "onnx",
                      out_path: str | Path | None = None) -> Path:
    """Build (and cache) the tuned table from every prompt under ``data_dir``; progress on stderr."""
    from router_gateway.embedding import make_embedder
    from router_gateway.embedding.disk_cache import embed_cached

    t0 = time.perf_counter()
    model_dir = model_dir_for(model)
    out_path = Path(out_path) if out_path else tuned_table_path(model)
    prompts = corpus_prompts(data_dir)
    if not prompts:
        raise ValueError(f"no prompts found under {data_dir}")
    _say(f"{len(prompts)} distinct prompts under {data_dir}; MiniLM ({targets}) embeddings of them "
         f"(cached by prompt digest) ...")
    Y = embed_cached(make_embedder(targets, model=model), prompts)
    t1 = time.perf_counter()
    _say(f"isolated-token vectors of the vocabulary ({t1 - t0:.0f} s so far) ...")
    init = post_process(token_vectors(model_dir, threads=1), pca_dims=None)
    t2 = time.perf_counter()
    _say(f"fitting the map on {len(prompts)} prompts ({t2 - t0:.0f} s so far) ...")
    table = static_tuning.linear_start(encode_all(model_dir / "tokenizer.json", prompts), Y, init, ridge=RIDGE)
    meta = {"recipe": RECIPE, "model": model_dir.name, "prompts": len(prompts),
            "corpus_sha256": hashlib.sha256("\n\x00".join(prompts).encode()).hexdigest(),
            "targets": targets, "seconds": {"embed": round(t1 - t0, 1), "isolated": round(t2 - t1, 1),
                                            "fit": round(time.perf_counter() - t2, 1)}}
    _save(out_path, table.astype(np.float16), meta)
    _say(f"wrote {out_path} in {time.perf_counter() - t0:.0f} s")
    return out_path


def _save(out_path: Path, table: np.ndarray, meta: dict) -> None:
    """Write the table atomically (a reader never sees half a file), then its metadata."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out_path.parent, suffix=".npy", delete=False) as f:
        np.save(f, table)
        tmp = f.name
    os.replace(tmp, out_path)
    st = out_path.stat()  # the digest, recorded for the file as written: no start-up hashes 23 MB
    meta = {**meta, "table_sha256": _sha256(out_path), "table_bytes": st.st_size, "table_mtime_ns": st.st_mtime_ns}
    out_path.with_suffix(".json").write_text(json.dumps(meta, indent=1))


def _say(msg: str) -> None:
    print(f"[static-tuned] {msg}", file=sys.stderr, flush=True)


def ensure_tuned(model: str = DEFAULT_MODEL) -> Path:
    """The built table's path, or TunedTableMissing saying how to build it."""
    path = tuned_table_path(model)
    if not path.exists():
        raise TunedTableMissing(f"no tuned static table at {path}: build it once with `{BUILD_COMMAND}` "
                                f"(needs torch; a few minutes on 2 cores), with the same ROUTER_GATEWAY_CACHE")
    return path


def table_digest(path: Path) -> str:
    """8 hex digits of the table file's sha256: part of the embedder's name, so routers trained on
    one build refuse another (a rebuild on other data is another embedding space). Read from the
    build's .json while the file is the one it describes (same size and mtime), else computed."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        st = path.stat()
        if meta.get("table_sha256") and (meta.get("table_bytes"), meta.get("table_mtime_ns")) == \
                (st.st_size, st.st_mtime_ns):
            return meta["table_sha256"][:8]
    except (OSError, ValueError):
        pass
    return _sha256(path)[:8]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def make_tuned_static(model: str = DEFAULT_MODEL, table_path: str | Path | None = None):
    """The ``static-tuned`` embedder: the static backend's lookup over the tuned table."""
    from router_gateway.embedding.static_backend import StaticEmbedder
    path = Path(table_path) if table_path else ensure_tuned(model)
    return StaticEmbedder(model, table_path=path, suffix=f"{NAME_SUFFIX}-{table_digest(path)}",
                          max_tokens=MAX_TOKENS, backend="static-tuned")


def main(argv: list[str] | None = None) -> int:
    """``python -m router_gateway.embedding.tuned_static DATA_DIR [--targets torch|onnx] [--force]``"""
    import argparse
    p = argparse.ArgumentParser(description="build the tuned static embedding table")
    p.add_argument("data_dir", help="directory of prompts (e.g. ../shared/data)")
    p.add_argument("--targets", default="onnx", choices=("torch", "onnx"),
                   help="MiniLM backend whose embeddings the map is fitted to (default onnx: the serving model, "
                        "fastest on CPU; torch shares the cache that train and eval fill)")
    p.add_argument("--force", action="store_true", help="rebuild even if the table exists")
    args = p.parse_args(argv)
    path = tuned_table_path()
    if path.exists() and not args.force:
        _say(f"already built: {path}")
    else:
        build_tuned_table(args.data_dir, targets=args.targets)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
