"""A fake OpenAI-compatible expert for integration tests: a real HTTP server, behaviour by name.

Run: ``python -m tests.support.fake_expert --port N --behaviour ok``. Behaviours:
ok (answers, echoing the request it got), slow (delays the first byte), error (500), ratelimit (429),
hang (never answers), die_midstream (streams two chunks then drops the connection),
flaky (fails every other request with 500), badrequest (400 in OpenAI's shape), unhealthy
(health endpoint answers 503), slowstream (waits ``delay`` seconds between stream chunks), fail<N>
(N% of calls fail at random: half answer 500, half of the streams die after the first chunk; the
soak test's "10% of upstream calls failing" is fail10). Only 'unhealthy' fails the health check: the others are up but misbehave.
Protocol misbehaviours: endless (a stream that never ends; a plain answer, and the health answer,
whose JSON body trickles forever), noblank (one stream event that never ends: bytes without a blank
line), plaintext (a 200 text/html page to a stream request), redirect (302 to elsewhere, with a
body), huge (a plain answer of ``delay`` MiB of valid JSON), errorin200 (an error object with status
200), streamerror (a 200 stream whose first event is an error, as vLLM sends when generation fails),
and, served by a raw socket server since uvicorn always frames its bodies, closecut (a close-delimited
body cut short: two stream events, or half a JSON body, then the connection closes) and closeok (a
close-delimited stream that ends properly with [DONE]).
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
from typing import AsyncIterator

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
    if behaviour in MISBEHAVIOURS:
        return MISBEHAVIOURS[behaviour](body)
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


def _counting_abandoned(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async def wrapper():
        try:
            async for event in events:
                yield event
        except (asyncio.CancelledError, GeneratorExit):  # the caller closed the connection
            STATE["abandoned"] += 1
            raise
    return wrapper()


def _endless(body: dict) -> Response:
    async def stream():
        n = 0
        while True:
            n += 1
            yield chunk(body, {"content": f"w{n} "})
            await asyncio.sleep(0.05)

    async def trickle():  # valid JSON so far, but never finished
        yield b'{"id": "chatcmpl-endless", "choices": ['
        while True:
            await asyncio.sleep(0.05)
            yield b" "
    if body.get("stream"):
        return StreamingResponse(_counting_abandoned(stream()), media_type="text/event-stream")
    return StreamingResponse(_counting_abandoned(trickle()), media_type="application/json")


def _noblank(body: dict) -> Response:
    async def stream():  # one event that never ends: no blank line ever comes
        yield b"data: "
        while True:
            yield b"x" * 65536
            await asyncio.sleep(0)
    return StreamingResponse(_counting_abandoned(stream()), media_type="text/event-stream")


def _plaintext(body: dict) -> Response:
    if not body.get("stream"):
        return Response(orjson.dumps(completion(body, f"answer from {STATE['name']}")), media_type="application/json")
    return Response(b"<html><body>down for maintenance</body></html>", media_type="text/html")


def _redirect(body: dict) -> Response:
    """A 302 with a body, as proxies send: JSON to a plain request, a page to a stream request (neither
    may reach the client as if it were the answer)."""
    content, media = (b"<html><a href='/elsewhere'>Found</a></html>", "text/html") if body.get("stream") \
        else (b'{"moved_to": "http://127.0.0.1:9/elsewhere"}', "application/json")
    return Response(content, status_code=302, media_type=media,
                    headers={"location": "http://127.0.0.1:9/elsewhere"})


def _huge(body: dict) -> Response:
    size = int(STATE["delay"] * (1 << 20))
    text = "x" * size
    return Response(orjson.dumps(completion(body, text)), media_type="application/json")


def _errorin200(body: dict) -> Response:
    return Response(b'{"error": {"message": "overloaded, try later", "type": "server_error"}}',
                    media_type="application/json")


def _streamerror(body: dict) -> Response:
    """vLLM's way of failing during generation: an error event in a 200 stream, then [DONE]."""
    if not body.get("stream"):
        return Response(b'{"error": {"message": "boom", "type": "server_error"}}', status_code=500)
    return Response(b'data: {"error": {"message": "engine died", "type": "InternalServerError", "code": 500}}'
                    b"\n\ndata: [DONE]\n\n", media_type="text/event-stream")


MISBEHAVIOURS = {"endless": _endless, "noblank": _noblank, "plaintext": _plaintext, "redirect": _redirect,
                 "huge": _huge, "errorin200": _errorin200, "streamerror": _streamerror}


async def models(request: Request) -> Response:
    if STATE["behaviour"] == "unhealthy":
        return Response(b"{}", status_code=503)
    if STATE["behaviour"] == "endless":  # a health answer whose body never ends
        async def forever():
            yield b'{"object": "list", "data": ['
            while True:
                await asyncio.sleep(0.05)
                yield b" "
        return StreamingResponse(forever(), media_type="application/json")
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


RAW_BEHAVIOURS = ("closecut", "closeok")


async def raw_server(port: int) -> None:
    """Close-delimited answers (neither content-length nor chunked), which uvicorn never sends."""
    server = await asyncio.start_server(_raw_connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


async def _raw_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        raw = await reader.readexactly(length)
        if not head.startswith(b"POST /v1/chat/completions"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
                         + orjson.dumps(STATE))
            return
        STATE["count"] += 1
        body = orjson.loads(raw)
        if body.get("stream"):
            events = [chunk(body, {"role": "assistant", "content": ""}), chunk(body, {"content": "answer "})]
            if STATE["behaviour"] == "closeok":
                events += [chunk(body, {"content": "from "}), chunk(body, {"content": STATE["name"]}),
                           chunk(body, {}, "stop"), b"data: [DONE]\n\n"]
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
            for event in events:
                writer.write(event)
                await writer.drain()
                await asyncio.sleep(0.02)
        else:
            answer = orjson.dumps(completion(body, f"answer from {STATE['name']}"))
            if STATE["behaviour"] == "closecut":
                answer = answer[: len(answer) // 2]
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
                         + answer)
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--behaviour", default="ok")
    parser.add_argument("--name", default="fake")
    parser.add_argument("--delay", type=float, default=0.5)
    args = parser.parse_args()
    STATE.update(behaviour=args.behaviour, name=args.name, delay=args.delay)
    if args.behaviour in RAW_BEHAVIOURS:
        asyncio.run(raw_server(args.port))
        return
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
