"""A fake OpenAI-compatible expert that queues like an inference engine (its own process).

It serves ``--slots`` requests at a time, each for ``--service-ms``; the rest wait in FIFO order, as
requests wait for a batch slot in vLLM. ``GET /metrics`` reports what vLLM reports under the same
names (requests waiting and running, KV-cache use as the share of busy slots, finished requests and
the time they spent being served), so the gateway's engine-metrics poller reads it like a real server.

    python -m eval.capacity.queue_expert --port 9101 --slots 4 --service-ms 200 --model strong
"""
from __future__ import annotations

import argparse
import asyncio
import time

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


class Engine:
    """Slots, a FIFO queue and the counters the metrics page reports."""

    def __init__(self, slots: int, service_s: float, model: str):
        self.slots = asyncio.Semaphore(slots)  # asyncio's semaphore wakes waiters in FIFO order
        self.n_slots = slots
        self.service_s = service_s
        self.model = model
        self.waiting = 0
        self.running = 0
        self.finished = 0
        self.service_sum = 0.0

    async def serve(self) -> None:
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        started = time.perf_counter()
        try:
            await asyncio.sleep(self.service_s)
        finally:
            self.running -= 1
            self.slots.release()
            self.finished += 1
            self.service_sum += time.perf_counter() - started

    def metrics(self) -> str:
        labels = f'{{engine="0",model_name="{self.model}"}}'
        return "\n".join([
            "# TYPE vllm:num_requests_running gauge", f"vllm:num_requests_running{labels} {self.running}",
            "# TYPE vllm:num_requests_waiting gauge", f"vllm:num_requests_waiting{labels} {self.waiting}",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{labels} {self.running / self.n_slots}",
            "# TYPE vllm:request_success counter", f"vllm:request_success_total{labels} {self.finished}",
            "# TYPE vllm:request_inference_time_seconds histogram",
            f"vllm:request_inference_time_seconds_sum{labels} {self.service_sum}",
            f"vllm:request_inference_time_seconds_count{labels} {self.finished}", ""])


def build_app(engine: Engine) -> Starlette:
    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        await engine.serve()
        answer = {"id": "chatcmpl-queue", "object": "chat.completion", "created": int(time.time()),
                  "model": body.get("model", engine.model),
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                               "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}}
        return Response(orjson.dumps(answer), media_type="application/json")

    async def models(_: Request) -> Response:
        return Response(orjson.dumps({"object": "list", "data": [{"id": engine.model, "object": "model"}]}),
                        media_type="application/json")

    async def metrics(_: Request) -> Response:
        return PlainTextResponse(engine.metrics())

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/models", models), Route("/metrics", metrics)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--service-ms", type=float, default=200.0)
    ap.add_argument("--model", default="queue-expert")
    args = ap.parse_args()
    engine = Engine(args.slots, args.service_ms / 1000.0, args.model)
    uvicorn.run(build_app(engine), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
