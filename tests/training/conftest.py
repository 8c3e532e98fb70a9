"""Fixtures for training tests: the fake embedder patched in (tests/support/training_data.py)."""
from __future__ import annotations

import pytest

from tests.support.training_data import fake_embed


@pytest.fixture
def fake_embedder(monkeypatch):
    import router_gateway.training.pipeline as pipeline

    monkeypatch.setattr(pipeline, "embed_prompts", fake_embed)
    return fake_embed
