"""A fake OpenAI-compatible expert for integration tests: a real HTTP server, behaviour by name.

Run: ``python -m tests.support.fake_expert --port N --behaviour ok``. Behaviours:
ok (answers, echoing the request it got), slow (delays the first byte), error (500), ratelimit (429),
hang (never answers), die_midstream (streams two chunks then drops the connection),
flaky (fails every other request with 500), badrequest (400 in OpenAI's shape), unhealthy
(health endpoint answers 503), slowstream (waits ``delay`` seconds between stream chunks), fail<N>
(N% of calls fail at random: half answer 500, half of the streams die after the first chunk; the
soak test's "10% of upstream calls failing" is fail10). Only 'unhealthy' fails the health check: the others are up but misbehave.
It also serves the Responses API (keeping the ids it answered, like vLLM: an unknown
``previous_response_id`` is a 404), completions and embeddings, for the ok behaviour.
The behaviour can be changed at run time with ``POST /_behaviour {"behaviour": ...}``.
Like vLLM, it notices a caller that goes away: ``/_stats`` counts such requests as ``abandoned``.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import time

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

STATE = {"behaviour": "ok", "delay": 0.5, "count": 0, "name": "fake", "abandoned": 0, "responses": []}


async def wait_for_caller(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``; False (and counted as abandoned) as soon as the caller disconnects."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if await request.is_disconnected():
            STATE["abandoned"] += 1
            return False
        await asyncio.sleep(min(0.05, left))
    return True


def completion(body: dict, text: str) -> dict:
    return {"id": f"chatcmpl-{STATE['count']}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text,
                                     **({"tool_calls": [{"id": "call_1", "type": "function",
                                                         "function": {"name": _tool_name(body),
                                                                      "arguments": "{\"x\": 1}"}}]}
                                        if body.get("tools") else {})}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            "x_echo": body, "x_server": STATE["name"]}


def _tool_name(body: dict) -> str:
    try:  # fuzzed requests carry any shape of tools: the fake must not be the thing that breaks
        return str(body["tools"][0]["function"]["name"])
    except (KeyError, IndexError, TypeError):
        return "tool"


def chunk(body: dict, delta: dict, finish: str | None = None) -> bytes:
    data = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 0, "model": body.get("model"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(data) + b"\n\n"


async def chat(request: Request) -> Response:
    STATE["count"] += 1
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return Response(b'{"error": {"message": "not a JSON object", "type": "invalid_request_error"}}',
                        status_code=400)
    behaviour = STATE["behaviour"]
    if behaviour == "flaky":
        behaviour = "error" if STATE["count"] % 2 else "ok"
    if behaviour.startswith("fail"):
        draw = random.random() * 100
        rate = float(behaviour[4:] or 10)
        behaviour = "ok" if draw >= rate else ("die_midstream" if body.get("stream") and draw < rate / 2
                                               else "error")
    if behaviour == "error":
        return Response(b'{"error": {"message": "boom", "type": "server_error"}}', status_code=500)
    if behaviour == "ratelimit":
        return Response(b'{"error": {"message": "slow down"}}', status_code=429)
    if behaviour == "badrequest":
        return Response(orjson.dumps({"error": {"message": "bad temperature", "type": "BadRequestError",
                                                "param": "temperature", "code": 400}}), status_code=400)
    if behaviour == "hang" and not await wait_for_caller(request, 3600):
        return Response(b"", status_code=499)
    if behaviour == "slow" and not await wait_for_caller(request, STATE["delay"]):
        return Response(b"", status_code=499)
    text = f"answer from {STATE['name']}"
    if not body.get("stream"):
        return Response(orjson.dumps(completion(body, text)), media_type="application/json")

    async def events():
        try:
            async for event in _events():
                yield event
        except (asyncio.CancelledError, GeneratorExit):  # the caller closed the connection
            STATE["abandoned"] += 1
            raise

    async def _events():
        yield chunk(body, {"role": "assistant", "content": ""})
        for word in text.split():
            if behaviour == "slowstream":
                await asyncio.sleep(STATE["delay"])
            yield chunk(body, {"content": word + " "})
            if behaviour == "die_midstream":
                await asyncio.sleep(0.05)
                os._exit(1) if STATE.get("exit_on_die") else None
                raise ConnectionResetError("dying mid-stream")
        yield chunk(body, {}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 0,
                     "model": body.get("model"), "choices": [],
                     "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}
            yield b"data: " + orjson.dumps(usage) + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def models(request: Request) -> Response:
    if STATE["behaviour"] == "unhealthy":
        return Response(b"{}", status_code=503)
    return Response(orjson.dumps({"object": "list", "data": [{"id": STATE["name"], "object": "model"}]}),
                    media_type="application/json")


async def set_behaviour(request: Request) -> Response:
    data = orjson.loads(await request.body())
    STATE.update({k: v for k, v in data.items() if k in ("behaviour", "delay")})
    return Response(orjson.dumps(STATE), media_type="application/json")


async def stats(request: Request) -> Response:
    return Response(orjson.dumps(STATE), media_type="application/json")


async def responses(request: Request) -> Response:
    STATE["count"] += 1
    body = orjson.loads(await request.body())
    previous = body.get("previous_response_id")
    if previous and previous not in STATE["responses"]:
        return Response(orjson.dumps({"error": {"message": f"Response with id '{previous}' not found.",
                                                "type": "invalid_request_error", "param": "previous_response_id",
                                                "code": None}}), status_code=404)
    rid = f"resp_{STATE['name']}_{STATE['count']}"
    STATE["responses"].append(rid)
    text = f"answer from {STATE['name']}"
    response = {"id": rid, "object": "response", "created_at": int(time.time()), "model": body.get("model"),
                "status": "completed", "previous_response_id": previous, "x_server": STATE["name"],
                "output": [{"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                            "content": [{"type": "output_text", "text": text, "annotations": []}]}],
                "usage": {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}}
    if not body.get("stream"):
        return Response(orjson.dumps(response), media_type="application/json")

    async def events():
        seq = iter(range(100))
        created = {**response, "status": "in_progress", "output": [], "usage": None}
        yield _event("response.created", {"type": "response.created", "sequence_number": next(seq),
                                          "response": created})
        for word in text.split():
            yield _event("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "msg_1",
                                                        "output_index": 0, "content_index": 0,
                                                        "sequence_number": next(seq), "delta": word + " "})
        yield _event("response.completed", {"type": "response.completed", "sequence_number": next(seq),
                                            "response": response})

    return StreamingResponse(events(), media_type="text/event-stream")


def _event(name: str, data: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def completions(request: Request) -> Response:
    body = orjson.loads(await request.body())
    return Response(orjson.dumps({"id": "cmpl-1", "object": "text_completion", "created": 0, "model": body.get("model"),
                                  "choices": [{"index": 0, "text": f" from {STATE['name']}", "finish_reason": "stop",
                                               "logprobs": None}],
                                  "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}),
                    media_type="application/json")


async def embeddings(request: Request) -> Response:
    body = orjson.loads(await request.body())
    inputs = body["input"] if isinstance(body.get("input"), list) else [body.get("input")]
    data = [{"object": "embedding", "index": i, "embedding": [0.5, -0.5, float(len(str(x)))]}
            for i, x in enumerate(inputs)]
    return Response(orjson.dumps({"object": "list", "model": body.get("model"), "data": data,
                                  "usage": {"prompt_tokens": 4, "total_tokens": 4}}), media_type="application/json")


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                        Route("/v1/responses", responses, methods=["POST"]),
                        Route("/v1/completions", completions, methods=["POST"]),
                        Route("/v1/embeddings", embeddings, methods=["POST"]),
                        Route("/v1/models", models), Route("/health", models),
                        Route("/_behaviour", set_behaviour, methods=["POST"]), Route("/_stats", stats)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--behaviour", default="ok")
    parser.add_argument("--name", default="fake")
    parser.add_argument("--delay", type=float, default=0.5)
    args = parser.parse_args()
    STATE.update(behaviour=args.behaviour, name=args.name, delay=args.delay)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
