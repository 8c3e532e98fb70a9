"""LiteLLM's proxy, the comparison point: installed in its own venv from an audited pin.

litellm had compromised releases on PyPI (1.82.7 / 1.82.8, 1.107.x withdrawn); releases from
1.106.3 on require a certifi that PyPI does not have yet, so the newest installable clean release
of the 1.106 line is pinned here. It never enters the product's own environment.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LITELLM_PIN = "1.106.2"
VENV = Path(__file__).resolve().parent / ".venv-litellm"
# it fetches a model cost map from the network at import time unless told not to
ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False",
       "DISABLE_ADMIN_UI": "True"}


def litellm_bin(venv: Path = VENV) -> Path:
    return venv / "bin" / "litellm"


def installed_version(venv: Path = VENV) -> str | None:
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or None


def ensure_litellm(venv: Path = VENV, quiet: bool = True) -> Path:
    """Create the venv and install ``litellm[proxy]==PIN`` unless that version is there already."""
    if installed_version(venv) == LITELLM_PIN and litellm_bin(venv).exists():
        return litellm_bin(venv)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing litellm[proxy]=={LITELLM_PIN} into {venv} ...", file=sys.stderr, flush=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", *(["-q"] if quiet else []),
                    f"litellm[proxy]=={LITELLM_PIN}"], check=True)
    return litellm_bin(venv)


def proxy_command(config: Path, port: int, venv: Path = VENV) -> list[str]:
    return [str(litellm_bin(venv)), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1"]
