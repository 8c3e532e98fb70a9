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
    """{"current": path or None (the configured router), "history": [older paths], "version": n,
    "canary": path on trial or None}."""
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

    def _save(self, router: Router, info: dict[str, Any]) -> tuple[str, int]:
        version = int(self.pointer.get("version", 0)) + 1
        path = self.directory / f"v{version:04d}"
        save_artifact(router, path, embedder=self.embedder, extra={"learning": {**info, "promoted_at": self.clock()}})
        return str(path), version

    def _make_live(self, path: str, version: int) -> str:
        self.live = self._load(path)
        history = list(self.pointer.get("history", []))
        if self.pointer.get("current"):
            history.append(self.pointer["current"])
        self.pointer = {"current": path, "history": history, "version": version, "canary": None}
        write_pointer(self.directory, self.pointer)
        if self.on_swap:
            self.on_swap(path)
        return path

    def promote(self, router: Router, info: dict[str, Any]) -> str:
        return self._make_live(*self._save(router, info))

    @property
    def canary(self) -> str | None:
        return self.pointer.get("canary")

    def start_canary(self, router: Router, info: dict[str, Any]) -> str:
        """Save ``router`` and put it on trial (it serves the canary share; the live router stays)."""
        path, version = self._save(router, info)
        self._load(path)  # fails here, not in the swap, if the artifact does not fit the experts
        self.pointer = {**self.pointer, "canary": path, "version": version}
        write_pointer(self.directory, self.pointer)
        if self.on_swap:
            self.on_swap(self.pointer.get("current"))
        return path

    def end_canary(self, promote: bool) -> str | None:
        """Make the canary live (``promote``) or drop it; returns the live artifact (None: configured)."""
        path = self.pointer.get("canary")
        if path is None:
            return self.pointer.get("current")
        if promote:
            return self._make_live(path, int(self.pointer.get("version", 0)))
        self.pointer = {**self.pointer, "canary": None}
        write_pointer(self.directory, self.pointer)
        if self.on_swap:
            self.on_swap(self.pointer.get("current"))
        return self.pointer.get("current")

    def revert(self) -> str | None:
        """Back to the previous artifact (or the configured router); returns what is live now.
        While a canary runs, revert stops the canary and leaves the live router as it is."""
        if self.pointer.get("canary"):
            return self.end_canary(promote=False)
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
            canary_changed = pointer.get("canary") != self.pointer.get("canary")
            self.pointer = pointer
            if canary_changed and self.on_swap:
                self.on_swap(pointer.get("current"))
            return canary_changed
        self.live = self._load(pointer["current"]) if pointer.get("current") else self.baseline
        self.pointer = pointer
        if self.on_swap:
            self.on_swap(pointer.get("current"))
        return True
