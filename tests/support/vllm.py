"""Where the real vLLM-CPU experts of the e2e tests are, and how a test skips (or fails) when they are not
running (tests/e2e/conftest.py documents the environment variables)."""
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
