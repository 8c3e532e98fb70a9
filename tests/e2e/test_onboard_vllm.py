"""End to end: `router-gateway onboard` grades probe prompts on a real vLLM-CPU expert, called through the
gateway's forwarder as experts.yaml defines it, and adds the expert to a real cluster artifact.

Uses the ``vllm_experts`` fixture (tests/e2e/conftest.py); skips when the experts are not running unless
RG_E2E_REQUIRED=1 (CI).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from router_gateway.cli import main
from routers.artifact import load_artifact, save_artifact
from routers.cluster import ClusterRouter
from tests.support.configs import config_text, expert

pytestmark = pytest.mark.vllm

TRAIN = [f"{q} ({i})" for i in range(6) for q in (
    "What is the capital of Italy?", "What is 3 plus 4?", "Name a colour of the sky.",
    "Write a haiku about rain.", "Which planet is the largest?", "Translate 'thank you' into French.")]
PROBES = [("What is the capital of France? Answer with one word.", "Paris"),
          ("What is the capital of Japan? Answer with one word.", "Tokyo"),
          ("What is the capital of Germany? Answer with one word.", "Berlin")]


def test_onboard_a_real_expert_into_a_cluster_artifact(vllm_experts, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from router_gateway.embedding.factory import make_embedder

    embedder = make_embedder("onnx", threads=1)
    X = embedder.embed(TRAIN)
    Y = np.random.default_rng(0).uniform(0.3, 0.9, size=(len(TRAIN), 1))
    router = ClusterRouter(n_clusters=3).fit(X, Y, experts=["smollm2-dense"])
    art = save_artifact(router, tmp_path / "cluster", embedder=embedder.info.as_dict())
    config = tmp_path / "experts.yaml"
    config.write_text(config_text({  # the onboard command reads the experts only: no other section
        name: expert(url, name, 0.1, 0.4, timeout={"connect": 3, "first_byte": 120, "total": 300})
        for name, url in vllm_experts.items() if name in ("smollm2-dense", "smollm2-moe")}))
    probes = tmp_path / "probes.csv"
    probes.write_text("prompt,reference\n" + "".join(f'"{p}",{r}\n' for p, r in PROBES))

    code = main(["onboard", "smollm2-moe", "--probes", str(probes), "--artifact", str(art),
                 "--config", str(config), "--out", str(tmp_path / "out"), "--embedder", "onnx"])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    result = json.loads(out.out.strip().splitlines()[-1])
    assert result["probes"] == 3 and result["failed_calls"] == 0
    # SmolLM2-135M knows these capitals; the grade is real, so require most of them
    assert result["mean_grade"] >= 2 / 3
    onboarded, meta = load_artifact(tmp_path / "out")
    assert meta["experts"] == ["smollm2-dense", "smollm2-moe"]
    np.testing.assert_array_equal(onboarded.centroids_, router.centroids_)
    assert onboarded.predict_scores(embedder.embed(["What is the capital of Spain?"])).shape == (1, 2)
