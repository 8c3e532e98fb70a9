"""Send a few chat requests through the gateway with the openai client and print what happened.

For each request: which expert answered, the answer, tokens, cost and latency.
Usage: python scripts/demo_chat.py [--url http://127.0.0.1:8080/v1]
"""
from __future__ import annotations

import argparse
import time

import openai

REQUESTS = [
    ("auto", "What is the capital of France? Answer in one sentence.", False),
    ("auto", "Write a Python function that returns the square of a number.", True),
    ("auto-cheap", "Give me three words that rhyme with 'light'.", False),
    (None, "Name a primary colour.", False),  # None: the first expert, named directly
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8080/v1")
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.url, api_key="unused-without-keys", max_retries=0, timeout=300)
    experts = [m.id for m in client.models.list() if (m.model_extra or {}).get("kind") == "expert"]
    for model, prompt, stream in REQUESTS:
        model = model or experts[0]
        print(f"\n>>> model={model!r} stream={stream}\n    prompt: {prompt}")
        started = time.perf_counter()
        messages = [{"role": "user", "content": prompt}]
        if stream:
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=messages, max_tokens=args.max_tokens, temperature=0, stream=True,
                stream_options={"include_usage": True})
            text, usage, ttft = "", None, None
            for chunk in raw.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    ttft = ttft or time.perf_counter() - started
                    text += chunk.choices[0].delta.content
                usage = chunk.usage or usage
            cost = _cost(client, raw.headers["x-router-expert"], usage)
        else:
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=messages, max_tokens=args.max_tokens, temperature=0)
            reply = raw.parse()
            text, usage, ttft = reply.choices[0].message.content, reply.usage, None
            cost = float(raw.headers.get("x-router-cost-usd", "nan"))
        elapsed = time.perf_counter() - started
        tokens = f"{usage.prompt_tokens} in / {usage.completion_tokens} out" if usage else "unknown"
        rate = f", {usage.completion_tokens / elapsed:.1f} tok/s" if usage else ""
        print(f"    expert: {raw.headers['x-router-expert']}  (request {raw.headers['x-request-id']})")
        print(f"    answer: {text.strip()!r}")
        print(f"    tokens: {tokens}   cost: ${cost:.8f}   latency: {elapsed * 1000:.0f} ms"
              + (f" (first token {ttft * 1000:.0f} ms)" if ttft else "") + rate)
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
