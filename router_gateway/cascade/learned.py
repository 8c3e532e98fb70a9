"""The learned verifier: P(answer right | prompt, answer, router estimate), an artifact of arrays.

Inputs, in this order, as the artifact's ``inputs`` lists them:
- ``features``: the hand-made answer features (answer_features.FEATURE_NAMES; checked on load);
- ``router_score``: the logit of the router's predicted score for the answering expert;
- ``answer_embedding`` / ``prompt_embedding``: MiniLM embeddings (then the gateway's embedder must be
  the artifact's; serving pays one answer embedding, a few ms on CPU).

Artifact: a directory with ``arrays.npz`` (mean, scale, weights; loaded with allow_pickle=False) and
``meta.json`` (type, inputs, feature names, the expert it was trained for, training figures).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from router_gateway.cascade.answer_features import FEATURE_NAMES, features
from router_gateway.cascade.logistic import Logistic, fit_logistic_cv
from router_gateway.cascade.verifiers import Check, CheckContext, choice_text

META, ARRAYS = "meta.json", "arrays.npz"
INPUTS = ("features", "router_score", "answer_embedding", "prompt_embedding")


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-3), 1 - 1e-3)
    return float(np.log(p / (1 - p)))


class LearnedVerifier:
    name = "learned"
    asynchronous = False

    def __init__(self, model: Logistic, inputs: tuple[str, ...], meta: dict[str, Any] | None = None):
        unknown = set(inputs) - set(INPUTS)
        if unknown:
            raise ValueError(f"unknown verifier inputs {sorted(unknown)}; known: {INPUTS}")
        self.model, self.inputs, self.meta = model, tuple(inputs), dict(meta or {})

    # -- serving ---------------------------------------------------------------------------------
    def upstream_params(self, body: dict[str, Any]) -> dict[str, Any]:
        return {}

    def check(self, prompt: str, response: dict[str, Any], context: CheckContext,
              embed: Callable[[list[str]], np.ndarray] | None = None) -> Check:
        answer = choice_text(response)
        row = self.input_row(prompt, answer, context.predicted_score, embed)
        return Check(float(self.model.predict(row[None, :])[0]))

    def input_row(self, prompt: str, answer: str, router_score: float | None,
                  embed: Callable[[list[str]], np.ndarray] | None = None) -> np.ndarray:
        parts: list[np.ndarray] = []
        for name in self.inputs:
            if name == "features":
                parts.append(features(prompt, answer))
            elif name == "router_score":
                parts.append(np.array([_logit(0.5 if router_score is None else router_score)]))
            else:
                if embed is None:
                    raise ValueError(f"this verifier needs {name}: give it the gateway's embedder")
                parts.append(np.asarray(embed([answer if name == "answer_embedding" else prompt])[0]))
        return np.concatenate(parts)

    # -- artifact --------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / ARRAYS, mean=self.model.mean, scale=self.model.scale, weights=self.model.weights)
        meta = {**self.meta, "verifier_type": "learned", "inputs": list(self.inputs),
                "feature_names": list(FEATURE_NAMES)}
        (directory / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "LearnedVerifier":
        directory = Path(directory)
        meta = json.loads((directory / META).read_text())
        if meta.get("verifier_type") != "learned":
            raise ValueError(f"{directory}: not a learned verifier artifact")
        if "features" in meta["inputs"] and meta.get("feature_names") != list(FEATURE_NAMES):
            raise ValueError(f"{directory}: trained on other answer features; retrain it")
        with np.load(directory / ARRAYS, allow_pickle=False) as z:
            model = Logistic(z["mean"], z["scale"], z["weights"])
        return cls(model, tuple(meta["inputs"]), meta)


def train_learned_verifier(prompts: list[str], answers: list[str], labels: np.ndarray,
                           groups: np.ndarray, router_scores: np.ndarray | None = None,
                           answer_emb: np.ndarray | None = None, prompt_emb: np.ndarray | None = None,
                           meta: dict[str, Any] | None = None) -> LearnedVerifier:
    """Fit on labelled (prompt, answer) rows; L2 chosen by cross-validation over ``groups``."""
    inputs = ["features"]
    blocks = [np.stack([features(p, a) for p, a in zip(prompts, answers)])]
    if router_scores is not None:
        inputs.append("router_score")
        blocks.append(np.array([[_logit(s)] for s in router_scores]))
    for name, emb in (("answer_embedding", answer_emb), ("prompt_embedding", prompt_emb)):
        if emb is not None:
            inputs.append(name)
            blocks.append(np.asarray(emb, dtype=np.float64))
    model, l2 = fit_logistic_cv(np.hstack(blocks), np.asarray(labels, dtype=np.float64), np.asarray(groups))
    return LearnedVerifier(model, tuple(inputs), {**(meta or {}), "l2": l2, "n_rows": len(prompts)})
