"""Operations endpoints (metrics, live view) mounted beside the API. Filled in by the observability work."""
from __future__ import annotations

from fastapi import FastAPI


def install_ops_routes(app: FastAPI) -> None:
    """Add /metrics and /ui routes (none yet)."""
