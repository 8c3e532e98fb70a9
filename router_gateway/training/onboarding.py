"""Onboard a new expert into a cluster artifact from graded probe prompts (UniRoute).

Probe prompts (CSV with ``prompt`` and ``reference`` columns) go to the new expert through the
gateway's own forwarder (``services.forwarding.Forwarder``), so the expert is called exactly as the
gateway will call it: its experts.yaml entry's provider (openai or litellm), model name, API key and
timeouts. Only that expert is tried (no fallbacks: a fallback's answer would be graded as the new
expert's). Answers are graded against the reference (normalised exact match or containment), or by a
judge expert; the grades give the expert's per-cluster quality vector. No refit of the clusters or of
the other experts.
"""
from __future__ import annotations

import asyncio
import csv
import re
import string
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from router_gateway.domain.config import Expert, GatewayConfig, Price, load_config
from router_gateway.domain.errors import GatewayError
from router_gateway.http.http1 import Connector


@dataclass(frozen=True)
class Endpoint:
    """An expert given by URL alone (``onboard --base-url``), not registered in experts.yaml yet."""

    base_url: str
    model: str
    api_key: str | None = None


def config_for_endpoint(name: str, ep: Endpoint) -> GatewayConfig:
    """A one-expert gateway config for an expert known only by its URL (prices do not matter here)."""
    return GatewayConfig(experts={name: Expert(base_url=ep.base_url, model=ep.model, api_key=ep.api_key,
                                               price=Price(input_per_mtok=0, output_per_mtok=0))})


def config_from_yaml(path: str | Path, *names: str) -> GatewayConfig:
    """experts.yaml, fully validated as the gateway reads it; every one of ``names`` must be defined."""
    config = load_config(path)
    missing = [n for n in names if n and n not in config.experts]
    if missing:
        raise ValueError(f"{path}: no expert {missing[0]!r} (defined: {', '.join(config.experts)})")
    return config


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


class ProbeRunner:
    """Sends probe prompts to one expert through the gateway's forwarder (pooled, with its timeouts)."""

    def __init__(self, config: GatewayConfig, connect: Connector | None = None,
                 timeout: float = 120.0):
        from router_gateway.forwarding.forwarder import Forwarder
        from router_gateway.state.expert_state import ExpertState

        self.forwarder = Forwarder(config, ExpertState(), connect)
        self.timeout = timeout

    async def ask(self, expert: str, prompt: str, max_tokens: int = 256) -> str | None:
        """One chat completion; None when the expert failed (graded 0 and counted)."""
        body = {"model": expert, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens, "temperature": 0}
        try:
            result = await self.forwarder.forward([expert], body, stream=False,
                                                  deadline=time.monotonic() + self.timeout)
            return orjson.loads(result.body)["choices"][0]["message"]["content"] or ""
        except (GatewayError, orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            return None

    async def judge_grade(self, judge: str, prompt: str, answer: str | None, reference: str) -> float:
        """Ask a judge expert whether the answer is correct given the reference (yes -> 1.0)."""
        if answer is None:
            return 0.0
        verdict = await self.ask(judge, "Question:\n" + prompt + "\n\nReference answer:\n" + reference +
                                 "\n\nCandidate answer:\n" + answer +
                                 "\n\nIs the candidate answer correct? Reply yes or no.", max_tokens=4)
        return 1.0 if verdict and normalise(verdict).startswith("yes") else 0.0

    async def aclose(self) -> None:
        await self.forwarder.aclose()


def grade_probes(prompts: list[str], references: list[str], expert: str, config: GatewayConfig,
                 judge: str | None = None, connect: Connector | None = None,
                 timeout: float = 120.0) -> tuple[list[float], int]:
    """Run every probe through ``expert`` and grade it; returns (grades, number of failed calls)."""
    async def run() -> tuple[list[float], int]:
        runner = ProbeRunner(config, connect, timeout)
        grades, failed = [], 0
        try:
            for i, (prompt, ref) in enumerate(zip(prompts, references), 1):
                answer = await runner.ask(expert, prompt)
                failed += answer is None
                grades.append(await runner.judge_grade(judge, prompt, answer, ref) if judge
                              else grade(answer, ref))
                if i % 10 == 0 or i == len(prompts):
                    print(f"[onboard] probes: {i}/{len(prompts)} (mean grade {sum(grades) / i:.3f})",
                          file=sys.stderr, flush=True)
        finally:
            await runner.aclose()
        return grades, failed

    return asyncio.run(run())


def onboard(name: str, probes: str | Path, artifact: str | Path, config: GatewayConfig, out: str | Path | None = None,
            judge: str | None = None, embed=None, connect: Connector | None = None) -> dict:
    """Grade the probes on expert ``name`` of ``config``, add it to the cluster artifact, write it to
    ``out`` (default: in place). ``judge``: another expert of ``config`` grades instead of the reference.

    ``embed(prompts) -> (X, embedder_info)``; defaults to the cached MiniLM embedder.
    """
    import numpy as np

    from router_gateway.training.pipeline import (
        check_artifact_compatible,
        embed_prompts,
    )
    from routers.artifact import load_artifact, save_artifact
    from routers.base import RouterError

    router, meta = load_artifact(artifact)
    if not router.grows_experts:
        raise RouterError(f"{artifact}: a {meta['router_type']} router cannot onboard experts (use cluster)")
    prompts, refs = read_probes(probes)
    if name in meta["experts"]:  # before calling the expert: a duplicate would be refused after the work
        raise RouterError(f"{artifact}: expert {name!r} is already in the artifact")
    for who in (name, judge):
        if who and who not in config.experts:
            raise RouterError(f"expert {who!r} is not in the config (defined: {', '.join(config.experts)})")
    grades, failed = grade_probes(prompts, refs, name, config, judge, connect)
    if failed == len(prompts):
        raise RouterError(f"every probe call to {config.experts[name].base_url} failed: is expert {name!r} up?")
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
