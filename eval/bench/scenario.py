"""What the benchmark runs against: experts.yaml for the gateway, a trained router artifact, and
LiteLLM's proxy config, all pointing at the same stub experts."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import yaml

log = logging.getLogger("eval.bench")

#: trained router types tried in order for the routed profile (the first registered one is used)
TRAINED_ROUTERS = ("knn", "cluster", "classifier")
EXPERTS = ("stub", "stub-fast")
TRAIN_ROWS = 4800  # stub answers after --delay-ms, stub-fast at once (saturation runs)

TRAIN_PROMPTS = [
    "What is the capital of {x}?", "Write a Python function that sorts {x}.", "Translate '{x}' into French.",
    "Solve the equation {x} = 0 for x.", "Summarise the history of {x}.", "Explain {x} to a child.",
    "Write a SQL query over the {x} table.", "What are the health effects of {x}?",
]
TRAIN_WORDS = ["Peru", "a linked list", "good night", "x^2 - 4", "Rome", "photosynthesis", "orders", "coffee",
               "Japan", "binary trees", "thank you", "2x + 1", "the internet", "gravity", "customers", "sugar"]


def train_router(embedder, out_dir: Path) -> str | None:
    """Fit the first registered trained router on synthetic prompts; returns its type (None: none)."""
    from routers.artifact import save_artifact
    from routers.registry import available_routers, make_router

    names = [n for n in TRAINED_ROUTERS if n in available_routers()]
    if not names:
        return None
    texts = [t.format(x=w) for t in TRAIN_PROMPTS for w in TRAIN_WORDS]
    X = embedder.embed(texts)
    rng = np.random.default_rng(0)
    # jittered copies pad the training set to a real table's size (llmrouter: ~4,800 training rows),
    # so a kNN search costs what it costs in production without embedding thousands of prompts here
    copies = -(-TRAIN_ROWS // len(texts))
    X = np.repeat(X, copies, axis=0)[:TRAIN_ROWS]
    X = X + rng.normal(scale=0.02, size=X.shape).astype(X.dtype)
    Y = rng.uniform(0.3, 0.9, size=(len(X), len(EXPERTS)))
    for name in names:
        try:
            router = make_router(name).fit(X, Y)
            router.experts_ = list(EXPERTS)
            save_artifact(router, out_dir / name, embedder=embedder.info.as_dict())
            return name
        except Exception as exc:  # a router under construction must not break the benchmark
            log.warning("could not train a %s router for the bench: %s", name, exc)
    return None


def gateway_config(stub_url: str, fast_url: str, work: Path, router_type: str | None,
                   embed_threads: int = 1, embedder: str = "onnx") -> Path:
    """Write experts.yaml for the gateway under ``work``; returns its path."""
    def expert(url: str) -> dict:
        return {"provider": "openai", "base_url": url + "/v1", "model": "stub-model",
                "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.4}, "context_window": 32768,
                "max_concurrency": 4096}

    router = {"type": router_type, "artifact": str(work / "routers" / router_type)} if router_type \
        else {"type": "strongest"}
    config = {
        "experts": {"stub": expert(stub_url), "stub-fast": expert(fast_url)},
        "routers": {"default": router},
        "profiles": {"auto": {"router": "default", "experts": ["stub"]},
                     "auto-fast": {"router": "default", "experts": ["stub-fast"]}},
        "embedder": {"backend": embedder, "threads": embed_threads},
        "logging": {"path": str(work / "requests.db")},
    }
    path = work / "experts.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def litellm_config(stub_url: str, fast_url: str, work: Path) -> Path:
    """LiteLLM proxy config forwarding ``stub`` and ``stub-fast`` to the same stubs."""
    def entry(name: str, url: str) -> dict:
        return {"model_name": name, "litellm_params": {"model": "openai/stub-model", "api_base": url + "/v1",
                                                       "api_key": "sk-bench"}}

    config = {"model_list": [entry("stub", stub_url), entry("stub-fast", fast_url)],
              "litellm_settings": {"drop_params": True, "set_verbose": False, "telemetry": False},
              "general_settings": {"disable_spend_logs": True}}
    path = work / "litellm.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
