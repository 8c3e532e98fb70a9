"""Onboard a new expert into a cluster artifact from graded probe prompts (UniRoute).

Probe prompts (CSV with ``prompt`` and ``reference`` columns) are sent to the new expert's
OpenAI-compatible ``/chat/completions``; answers are graded against the reference (normalised exact
match or containment), or by a judge expert; the grades give the expert's per-cluster quality
vector. No refit of the clusters or of the other experts.
"""
from __future__ import annotations

import csv
import re
import string
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class Endpoint:
    """Where an expert is served (OpenAI-compatible)."""

    base_url: str
    model: str
    api_key: str | None = None


def endpoint_from_yaml(path: str | Path, name: str) -> Endpoint:
    """The expert's base_url / model from experts.yaml (``${VAR:-default}`` expanded from the env)."""
    import os

    from router_gateway.training.data import read_experts_yaml

    experts = read_experts_yaml(path)
    if name not in experts:
        raise ValueError(f"{path}: no expert {name!r} (defined: {', '.join(experts)})")
    spec = experts[name]

    def expand(value):
        if not isinstance(value, str):
            return value
        return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)

    if not spec.get("base_url"):
        raise ValueError(f"{path}: expert {name!r} has no base_url")
    return Endpoint(expand(spec["base_url"]).rstrip("/"), expand(spec.get("model") or name),
                    expand(spec.get("api_key")) or None)


def read_probes(path: str | Path) -> tuple[list[str], list[str]]:
    """Probe prompts and their reference answers."""
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "prompt" not in reader.fieldnames or "reference" not in reader.fieldnames:
            raise ValueError(f"{path}: needs 'prompt' and 'reference' columns")
        rows = [(r["prompt"], r["reference"]) for r in reader if (r.get("prompt") or "").strip()]
    if not rows:
        raise ValueError(f"{path}: no probe prompts")
    return [p for p, _ in rows], [r for _, r in rows]


def normalise(text: str) -> str:
    text = text.lower().strip()
    text = text.translate(str.maketrans("", "", string.punctuation))
    return " ".join(text.split())


def grade(answer: str | None, reference: str) -> float:
    """1.0 when the normalised answer equals or contains the normalised reference, else 0.0."""
    if answer is None:
        return 0.0
    a, r = normalise(answer), normalise(reference)
    if not r:
        return 0.0
    return 1.0 if a == r or re.search(rf"(^|\s){re.escape(r)}($|\s)", a) else 0.0


def ask(client: httpx.Client, ep: Endpoint, prompt: str, max_tokens: int = 256) -> str | None:
    """One chat completion; None on an HTTP or protocol error (graded 0 and counted)."""
    headers = {"Authorization": f"Bearer {ep.api_key}"} if ep.api_key else {}
    try:
        resp = client.post(f"{ep.base_url}/chat/completions", headers=headers,
                           json={"model": ep.model, "messages": [{"role": "user", "content": prompt}],
                                 "max_tokens": max_tokens, "temperature": 0})
        resp.raise_for_status()
        return resp.json()["choices"][0]["message"]["content"] or ""
    except (httpx.HTTPError, KeyError, IndexError, ValueError):
        return None


def judge_grade(client: httpx.Client, judge: Endpoint, prompt: str, answer: str | None, reference: str) -> float:
    """Ask a judge expert whether the answer is correct given the reference (yes -> 1.0)."""
    if answer is None:
        return 0.0
    verdict = ask(client, judge, "Question:\n" + prompt + "\n\nReference answer:\n" + reference +
                  "\n\nCandidate answer:\n" + answer + "\n\nIs the candidate answer correct? Reply yes or no.",
                  max_tokens=4)
    return 1.0 if verdict and normalise(verdict).startswith("yes") else 0.0


def grade_probes(prompts: list[str], references: list[str], ep: Endpoint, judge: Endpoint | None = None,
                 transport: httpx.BaseTransport | None = None, timeout: float = 120.0) -> tuple[list[float], int]:
    """Run every probe through the expert and grade it; returns (grades, number of failed calls)."""
    grades, failed = [], 0
    with httpx.Client(transport=transport, timeout=timeout) as client:
        for i, (prompt, ref) in enumerate(zip(prompts, references), 1):
            answer = ask(client, ep, prompt)
            failed += answer is None
            grades.append(judge_grade(client, judge, prompt, answer, ref) if judge else grade(answer, ref))
            if i % 10 == 0 or i == len(prompts):
                print(f"[onboard] probes: {i}/{len(prompts)} (mean grade {sum(grades) / i:.3f})",
                      file=sys.stderr, flush=True)
    return grades, failed


def onboard(name: str, probes: str | Path, artifact: str | Path, ep: Endpoint, out: str | Path | None = None,
            judge: Endpoint | None = None, embed=None, transport: httpx.BaseTransport | None = None) -> dict:
    """Grade the probes, add expert ``name`` to the cluster artifact, write it to ``out`` (default: in place).

    ``embed(prompts) -> (X, embedder_info)``; defaults to the cached MiniLM embedder.
    """
    import numpy as np

    from router_gateway.training.pipeline import check_artifact_compatible, embed_prompts
    from routers.artifact import load_artifact, save_artifact
    from routers.base import RouterError

    router, meta = load_artifact(artifact)
    if not hasattr(router, "add_expert"):
        raise RouterError(f"{artifact}: a {meta['router_type']} router cannot onboard experts (use cluster)")
    prompts, refs = read_probes(probes)
    grades, failed = grade_probes(prompts, refs, ep, judge, transport)
    if failed == len(prompts):
        raise RouterError(f"every probe call to {ep.base_url} failed: is expert {name!r} up?")
    X, info = (embed or embed_prompts)(prompts)
    check_artifact_compatible(meta, info, list(meta["experts"]))
    router.add_expert(name, X, np.asarray(grades))
    keep = {k: v for k, v in meta.items() if k not in ("format_version", "router_type", "params", "experts",
                                                       "n_features", "embedder", "arrays_sha256")}
    onboarded = dict(keep.get("onboarded", {}))
    onboarded[name] = {"probes": len(prompts), "mean_grade": float(np.mean(grades)), "failed_calls": failed,
                       "grader": "judge" if judge else "reference"}
    keep["onboarded"] = onboarded
    path = save_artifact(router, out or artifact, embedder=meta["embedder"], extra=keep)
    return {"artifact": str(path), **onboarded[name]}
