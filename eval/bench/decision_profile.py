"""Where a routing decision's time goes, stage by stage, in process (issue 19).

Builds the bench's own deployment (``scenario``: a kNN router over 4,800 rows) for one embedder and
times each stage of ``RoutingService.decide`` on the bench's ~200-token prompt, p50 of many calls::

    OPENBLAS_NUM_THREADS=1 python -m eval.bench.decision_profile --embedder static-tuned

Stages: the HF tokenizer alone (what the static embedders called before the word-piece cache), the
cached word pieces, the table lookup and mean, the whole embedder, the batcher's hand-off (worker
thread, or inline for cheap embedders), the router's scores, and the whole decision. The stages
overlap (the embedder contains the tokenizer), so they do not sum to the decision. Wall-clock on a
shared host: compare figures taken in the same run, and note the load average it prints.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _p50_us(fn, n: int) -> float:
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(float(np.percentile(times, 50)) * 1e6, 1)


async def _async_p50_us(make_call, n: int) -> float:
    await make_call(-1)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        await make_call(i)
        times.append(time.perf_counter() - t0)
    return round(float(np.percentile(times, 50)) * 1e6, 1)


def profile(embedder_backend: str, n: int = 500) -> dict:
    from eval.bench.decision import LONG
    from eval.bench.scenario import gateway_config, train_router
    from router_gateway.domain.config import load_config
    from router_gateway.embedding.factory import make_embedder
    from router_gateway.routing.router_set import build_router_set, score_experts

    work = Path(tempfile.mkdtemp(prefix="decision-profile-"))
    base = make_embedder(embedder_backend)
    router_type = train_router(base, work / "routers")
    config = load_config(gateway_config("http://127.0.0.1:9", "http://127.0.0.1:9", work, router_type, 1,
                                        embedder_backend))
    routers = build_router_set(config, base.info)
    loaded = routers[config.profiles["auto"].router]
    out = {"embedder": base.info.as_dict(), "router": router_type, "loadavg": os.getloadavg(), "us_p50": {}}
    stages = out["us_p50"]
    if hasattr(base, "_pieces"):  # the static embedders
        from tokenizers import Tokenizer
        from router_gateway.embedding.static_backend import model_dir_for
        hf = Tokenizer.from_file(str(model_dir_for() / "tokenizer.json"))
        hf.no_padding()
        hf.enable_truncation(max_length=base._pieces.max_tokens)
        stages["tokenize: HF tokenizer"] = _p50_us(lambda: hf.encode(LONG, add_special_tokens=False), n)
        stages["tokenize: cached word pieces"] = _p50_us(lambda: base._pieces.ids(LONG), n)
        ids = base._pieces.ids(LONG)
        stages["table lookup + mean"] = _p50_us(lambda: base._table[ids].mean(axis=0), n)
    stages["embedder.embed (whole)"] = _p50_us(lambda: base.embed([LONG]), n)
    x = base.embed([LONG])[0]
    stages["router scores"] = _p50_us(lambda: score_experts(loaded, x, config), n)
    stages.update(asyncio.run(_async_stages(config, routers, base, n)))
    out["tokens"] = len(base._pieces.ids(LONG)) if hasattr(base, "_pieces") else None
    return out


async def _async_stages(config, routers, base, n: int) -> dict:
    from eval.bench.decision import LONG
    from router_gateway.embedding.batcher import BatchingEmbedder
    from router_gateway.domain.protocol import parse_chat_request
    from router_gateway.state.expert_state import ExpertState
    from router_gateway.routing.service import RoutingService

    s = config.embedder
    out = {}
    for inline in ((True, False) if getattr(base, "inline", False) else (False,)):
        batcher = BatchingEmbedder(base, s.max_batch, s.max_wait_ms, cache_size=0)
        batcher.inline = inline
        await batcher.start()
        try:
            label = "inline" if inline else "worker thread"
            out[f"batcher.embed_one ({label})"] = await _async_p50_us(
                lambda i: batcher.embed_one(f"{LONG} ({i})"), n)
            service = RoutingService(config, routers, batcher, ExpertState())
            chats = [parse_chat_request({"model": "auto", "messages": [{"role": "user", "content": f"{LONG} ({i})"}]})
                     for i in range(-1, n)]
            out[f"RoutingService.decide ({label})"] = await _async_p50_us(
                lambda i: service.decide(chats[i + 1], len(LONG) + 60, f"p{i}"), n)
        finally:
            await batcher.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embedder", default="static-tuned", choices=("static", "static-tuned", "onnx", "torch"))
    p.add_argument("-n", type=int, default=500)
    p.add_argument("--json")
    args = p.parse_args(argv)
    result = profile(args.embedder, args.n)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
