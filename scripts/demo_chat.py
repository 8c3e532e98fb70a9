"""Send a prompt mix through the gateway with the openai client and show why each request went where it went.

For each prompt: the routing decision (POST /v1/route: every expert ranked by utility, with the trained
router's predicted quality, the expected cost and the utility = quality - cost_weight x normalised cost), then
the real request: the expert that answered, the answer, tokens, cost and latency.
Usage: python scripts/demo_chat.py [--url http://127.0.0.1:8080/v1]
"""
from __future__ import annotations

import argparse
import time

import httpx
import openai

# Prompts of the kinds the router was trained on (eval/local_prompts.py) but not in its training set, and one
# open chat prompt. Which expert wins each is decided by the measured quality (eval/local_labels.csv);
# `auto-quality` is the same router with price ignored (cost weight 0; ties still go to the cheaper expert).
REQUESTS = [
    ("auto", "What is 41 + 16? Reply with the number only.", False),
    ("auto", "What is the capital of Peru? Reply with the city name only.", False),
    ("auto", "What is the opposite of the word 'heavy'? Reply with one word.", False),
    ("auto", "Is 73 an even or an odd number? Reply with one word.", False),
    ("auto", "Write one sentence about the sea.", True),
    ("auto-quality", "What is the capital of Chile? Reply with the city name only.", False),
]


def show_decision(http: httpx.Client, url: str, body: dict) -> str | None:
    """Print /v1/route's ranking for this body; returns the expert it would choose."""
    resp = http.post(f"{url}/route", json=body)
    if resp.status_code != 200:
        print(f"    decision: HTTP {resp.status_code}: {resp.text[:200]}")
        return None
    decision = resp.json()
    print(f"    decision: router {decision['router']!r}, cost weight {decision['cost_weight']}, "
          f"~{decision['prompt_tokens_est']} prompt tokens")
    print(f"      {'expert':<16}{'pred. quality':>14}{'expected cost':>16}{'utility':>10}")
    for c in decision["candidates"]:
        print(f"      {c['expert']:<16}{c['score']:>14.3f}{'$%.2e' % c['cost_usd']:>16}{c['utility']:>10.3f}")
    for name, reason in decision.get("ineligible", {}).items():
        print(f"      {name:<16} not eligible: {reason}")
    return decision["chosen"]


def chat(client: openai.OpenAI, model: str, messages: list, max_tokens: int, stream: bool):
    """(expert, text, usage, cost, request id, time to first token) of one request through the gateway."""
    started = time.perf_counter()
    if not stream:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=messages, max_tokens=max_tokens, temperature=0)
        reply = raw.parse()
        return (raw.headers["x-router-expert"], reply.choices[0].message.content or "", reply.usage,
                float(raw.headers.get("x-router-cost-usd", "nan")), raw.headers["x-request-id"], None)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, max_tokens=max_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True})
    text, usage, ttft = "", None, None
    for chunk in raw.parse():
        if chunk.choices and chunk.choices[0].delta.content:
            ttft = ttft or time.perf_counter() - started
            text += chunk.choices[0].delta.content
        usage = chunk.usage or usage
    expert = raw.headers["x-router-expert"]
    return expert, text, usage, _cost(client, expert, usage), raw.headers["x-request-id"], ttft


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080/v1")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.url, api_key="unused-without-keys", max_retries=0, timeout=300)
    http = httpx.Client(timeout=60)
    winners: dict[str, str] = {}
    for model, prompt, stream in REQUESTS:
        print(f"\n>>> model={model!r} stream={stream}\n    prompt: {prompt}")
        messages = [{"role": "user", "content": prompt}]
        predicted = show_decision(http, args.url, {"model": model, "messages": messages,
                                                   "max_tokens": args.max_tokens})
        started = time.perf_counter()
        expert, text, usage, cost, request_id, ttft = chat(client, model, messages, args.max_tokens, stream)
        elapsed = time.perf_counter() - started
        winners[prompt] = expert
        tokens = f"{usage.prompt_tokens} in / {usage.completion_tokens} out" if usage else "unknown"
        rate = f", {usage.completion_tokens / elapsed:.1f} tok/s" if usage else ""
        note = "" if predicted in (None, expert) else f" (the decision above said {predicted}: it changed)"
        print(f"    answered by: {expert}{note}  (request {request_id})")
        print(f"    answer: {text.strip()!r}")
        print(f"    tokens: {tokens}   cost: ${cost:.8f}   latency: {elapsed * 1000:.0f} ms"
              + (f" (first token {ttft * 1000:.0f} ms)" if ttft else "") + rate)
    print(f"\nexperts that answered: {sorted(set(winners.values()))}")
    return 0


def _cost(client: openai.OpenAI, expert: str, usage) -> float:
    """Streams: headers go out before usage is known, so price the final usage chunk here."""
    if usage is None:
        return float("nan")
    for m in client.models.list():
        if m.id == expert:
            price = m.model_extra["price"]
            return (usage.prompt_tokens * price["input_per_mtok"] + usage.completion_tokens * price["output_per_mtok"]) / 1e6
    return float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
