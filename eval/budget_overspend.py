"""Budget overspend under concurrency: how far past its daily budget a key gets when many of its
requests arrive at once.

Starts a fake expert that answers after ``--delay`` seconds (so the requests of one wave are all in
flight together), then for each setup (one replica on local state, one replica on Redis, two replicas
sharing one Redis) creates a fresh key with a ``--budget`` USD/day budget and sends waves of
``--concurrency`` requests at once (spread over the replicas) until a whole wave is refused. The
spend is the sum of the ``x-router-cost-usd`` headers of the answered requests (each costs 1e-5 USD
with the default prices); the overspend factor is spend / budget (1.0 = exactly the budget), over all
waves and over the first alone.

    python -m eval.budget_overspend [--concurrency 60] [--budget 0.0001] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
from pathlib import Path

COST_PER_REQUEST = 1e-5  # 11 prompt tokens at 0.4 USD/Mtok + 7 completion tokens at 0.8 USD/Mtok


def write_config(path: Path, expert_url: str) -> Path:
    path.write_text("\n".join([
        "experts:",
        f"  paid: {{base_url: {expert_url}/v1, model: paid, price: {{input_per_mtok: 0.4, output_per_mtok: 0.8}},",
        "         max_concurrency: 512, timeout: {connect: 2, first_byte: 30, total: 60}}",
        "routers: {strong: {type: strongest}}",
        "profiles: {auto: {router: strong, cost_weight: 0}}",
        f"logging: {{path: {path.parent / 'requests.db'}, flush_interval_ms: 50}}",
        "embedder: {backend: auto, threads: 1}",
        "server: {health_interval_s: 30}", ""]))
    return path


async def one(client, url: str, secret: str) -> tuple[int, float]:
    response = await client.post(f"{url}/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                                  json={"model": "auto", "max_tokens": 8,
                                        "messages": [{"role": "user", "content": "hi"}]})
    return response.status_code, float(response.headers.get("x-router-cost-usd", 0) or 0)


async def waves(urls: list[str], secret: str, concurrency: int, max_waves: int) -> dict:
    import httpx
    spend, answered, statuses, first_wave = 0.0, 0, {}, None
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for wave in range(max_waves):
            results = await asyncio.gather(*(one(client, urls[i % len(urls)], secret)
                                             for i in range(concurrency)))
            for status, cost in results:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    spend, answered = spend + cost, answered + 1
            if first_wave is None:
                first_wave = spend
            if not any(status == 200 for status, _ in results):
                break
            await asyncio.sleep(0.5)  # let the usage of the wave settle before the next
    return {"spend_usd": spend, "first_wave_usd": first_wave, "answered": answered, "statuses": statuses,
            "waves": wave + 1}


def measure(name: str, replicas: int, redis_url: str | None, expert_url: str, args, work: Path) -> dict:
    from router_gateway.state.keys import KeyStore
    from tests.support.servers import start_gateway, wait_gateway
    tmp = work / re.sub(r"[^a-z0-9]+", "-", name)
    tmp.mkdir()
    store = KeyStore(tmp / "keys.json")
    secret, _ = store.create("budget", budget_usd_day=args.budget)
    env = {"ROUTER_GATEWAY_KEYS": str(store.path), **({"REDIS_URL": redis_url} if redis_url else {})}
    gateways = []
    try:
        for i in range(replicas):
            (tmp / str(i)).mkdir()
            config = write_config(tmp / str(i) / "experts.yaml", expert_url)
            gateways.append(start_gateway(config, tmp / str(i), env=env, wait=False,
                                          extra_args=["--log-level", "warning"]))
        for gateway in gateways:
            wait_gateway(gateway)
        result = asyncio.run(waves([g.url for g in gateways], secret, args.concurrency, args.max_waves))
    finally:
        for gateway in gateways:
            gateway.stop()
    result.update(setup=name, replicas=replicas, budget_usd=args.budget,
                  overspend_factor=round(result["spend_usd"] / args.budget, 3),
                  first_wave_factor=round(result["first_wave_usd"] / args.budget, 3))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--concurrency", type=int, default=60, help="requests per wave (default %(default)s)")
    p.add_argument("--budget", type=float, default=1e-4, help="USD per day of the key (default %(default)s)")
    p.add_argument("--delay", type=float, default=1.0, help="seconds the expert takes to answer")
    p.add_argument("--max-waves", type=int, default=5)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    from tests.support.servers import start_fake_expert, start_redis
    work = Path(tempfile.mkdtemp(prefix="rg-budget-"))
    expert = start_fake_expert("slow", "paid", args.delay)
    redis = start_redis()
    redis_url = f"redis://127.0.0.1:{redis.port}/0"
    try:
        results = [measure("one replica, local state", 1, None, expert.url, args, work),
                   measure("one replica, Redis", 1, redis_url, expert.url, args, work),
                   measure("two replicas, one Redis", 2, redis_url, expert.url, args, work)]
    finally:
        expert.stop()
        redis.stop()
    print(f"budget {args.budget} USD/day, {args.concurrency} concurrent requests a wave, "
          f"{COST_PER_REQUEST} USD a request")
    for r in results:
        print(f"{r['setup']:<28} overspend x{r['overspend_factor']:<6} (first wave x{r['first_wave_factor']:<5}) "
              f"spend {r['spend_usd']:.6f} USD, "
              f"{r['answered']} answered in {r['waves']} waves, statuses {r['statuses']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
