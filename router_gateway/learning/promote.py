"""Promotion by artifact: every promoted candidate is written to ``<artifacts>/vNNNN`` and stays there.

``current.json`` in the same folder says which artifact is live and the history before it, so a
revert is one step back and survives a restart; the gateway applies it by the same hot swap as a
config reload (learning.service), the simulation by swapping its in-process router.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from routers.artifact import load_artifact, save_artifact
from routers.base import Router

POINTER = "current.json"


def read_pointer(directory: str | Path) -> dict[str, Any]:
    """{"current": path or None (the configured router), "history": [older paths], "version": n}."""
    path = Path(directory) / POINTER
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"current": None, "history": [], "version": 0}


def write_pointer(directory: str | Path, pointer: dict[str, Any]) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{POINTER}.{os.getpid()}"
    tmp.write_text(json.dumps(pointer, indent=2))
    os.replace(tmp, directory / POINTER)  # atomic: a reader sees the old or the new pointer


class ArtifactPromoter:
    """Keeps the live router of the learning profile (see module doc).

    ``baseline`` is the router the profile runs when nothing is promoted; ``on_swap(path | None)``
    is told after every promote or revert (the gateway hot-swaps there).
    """

    def __init__(self, directory: str | Path, experts: list[str], embedder: dict[str, Any], baseline: Router,
                 on_swap: Callable[[str | None], None] | None = None, clock: Callable[[], float] = time.time):
        self.directory = Path(directory)
        self.experts = list(experts)
        self.embedder = embedder
        self.baseline = baseline
        self.on_swap = on_swap
        self.clock = clock
        self.live: Router = baseline
        self.pointer = read_pointer(self.directory)
        if self.pointer.get("current"):
            self.live = self._load(self.pointer["current"])

    def _load(self, path: str) -> Router:
        router, meta = load_artifact(path)
        if list(meta["experts"]) != self.experts:
            raise ValueError(f"{path} scores {meta['experts']}, the loop runs {self.experts}")
        return router

    def live_scores(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.live.predict_scores(X), dtype=np.float64)

    def promote(self, router: Router, info: dict[str, Any]) -> str:
        version = int(self.pointer.get("version", 0)) + 1
        path = self.directory / f"v{version:04d}"
        save_artifact(router, path, embedder=self.embedder, extra={"learning": {**info, "promoted_at": self.clock()}})
        self.live = self._load(str(path))
        history = list(self.pointer.get("history", []))
        if self.pointer.get("current"):
            history.append(self.pointer["current"])
        self.pointer = {"current": str(path), "history": history, "version": version}
        write_pointer(self.directory, self.pointer)
        if self.on_swap:
            self.on_swap(str(path))
        return str(path)

    def revert(self) -> str | None:
        """Back to the previous artifact (or the configured router); returns what is live now."""
        history = list(self.pointer.get("history", []))
        previous = history.pop() if history else None
        self.live = self._load(previous) if previous else self.baseline
        self.pointer = {**self.pointer, "current": previous, "history": history}
        write_pointer(self.directory, self.pointer)
        if self.on_swap:
            self.on_swap(previous)
        return previous

    def adopt(self, pointer: dict[str, Any]) -> bool:
        """Follow a pointer another replica wrote; True when the live router changed."""
        if pointer.get("current") == self.pointer.get("current"):
            self.pointer = pointer
            return False
        self.live = self._load(pointer["current"]) if pointer.get("current") else self.baseline
        self.pointer = pointer
        if self.on_swap:
            self.on_swap(pointer.get("current"))
        return True
