"""``POST /v1/chat/completions`` as a plain ASGI handler: the gateway's hot path. The other OpenAI
endpoints (``/v1/responses``, ``/v1/completions``, ``/v1/embeddings``: api.openai_endpoints.ROUTES) share it.

Why not a FastAPI route: py-spy of a c=1 stream bench showed FastAPI's share of each request larger
than the gateway's own work: dependency solving (which also ran the sync auth check in a worker
thread), four middleware layers that each wrap ``send`` (so every stream chunk paid them), and
StreamingResponse's task group. Here the request goes straight from the server to ChatService. The
rest of the API stays in FastAPI (api.routes), and app.py still describes this endpoint in /openapi.json.

A client that disconnects cancels its request: a watcher waits on ``receive`` and cancels the task,
which closes the upstream response (the expert stops generating) and logs the request as 499.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect, Request

from router_gateway.api.deps import authenticate, read_json_body
from router_gateway.api.openai_endpoints import RESPONSES, ROUTES, response_recorder
from router_gateway.api.render import (
    JSON_HEADER,
    SSE_HEADERS,
    Send,
    encode_headers,
    internal_error,
    send_body,
    send_error,
)
from router_gateway.domain.errors import GatewayError, MethodNotAllowed, sse_error_event
from router_gateway.pipeline import CallContext, ChatOutcome, new_request_id
from router_gateway.state.sessions import session_ref

log = logging.getLogger("router_gateway.api")

PATH = "/v1/chat/completions"


def route_path(scope: dict[str, Any]) -> str:
    """The path without the root path a proxy mounted the app under (as Starlette's router sees it)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


async def handle_chat(app, scope: dict[str, Any], receive, send: Send, path: str = PATH) -> None:
    """Serve one request to ``path`` (chat completions or another of ROUTES); ``app`` is the FastAPI app
    whose lifespan built the gateway."""
    if scope["method"] != "POST":
        error = MethodNotAllowed(f"method {scope['method']} not allowed on {path}: use POST")
        await send_error(send, error, {"allow": "POST"})
        return
    request = Request(scope, receive)
    route = ROUTES[path]
    try:
        key = authenticate(request)
        gateway = app.state.gateway
        body, size = await read_json_body(request, gateway.runtime.config.server.max_body_bytes)
        chat = route.parse(body, gateway.runtime.config)
        ctx = CallContext(new_request_id(), body, size, request.headers.get("x-router-cost-weight"),
                          key_id=key.id if key else None, api_key=key, endpoint=route.endpoint)
        if route.sessions:
            ctx.session = session_ref(request.headers, body, chat.messages, ctx.key_id)
        if route.endpoint is RESPONSES:
            ctx.on_result = response_recorder(body, gateway.affinity.remember_response)
    except GatewayError as exc:
        await send_error(send, exc)
        return
    except ClientDisconnect:
        return  # gone while sending its body: nothing was routed, nobody to answer
    except Exception as exc:
        app.state.chat.log_unexpected_before_routing(exc)
        await internal_error(send, PATH)
        return
    await _serve_watching_disconnect(app.state.chat, chat, ctx, receive, send)


@dataclass(slots=True)
class _Exchange:
    """What the disconnect watcher needs to know about the response being sent."""

    finished: bool = False  # the response is complete: a disconnect now is the end of the exchange
    gone: bool = False  # the client left first: the watcher cancelled the request


async def _serve_watching_disconnect(service, chat, ctx: CallContext, receive, send: Send) -> None:
    task = asyncio.current_task()
    state = _Exchange()

    async def watch() -> None:
        # the body is read, so the next message is http.disconnect: the client left, or (servers that
        # say so after the last send) the response is complete, which ``finished`` tells apart
        while (await receive())["type"] != "http.disconnect":
            pass
        if not state.finished:
            state.gone = True
            ctx.client_gone = True  # what the log record says: the client left, the gateway did not cut it
            task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        outcome = await service.handle(chat, ctx)
        if outcome.stream is None:
            state.finished = True
            await send_body(send, 200, outcome.body, [JSON_HEADER], outcome.headers)
        else:
            await _send_stream(send, outcome, state)
    except asyncio.CancelledError:
        if not state.gone:
            raise  # the server is stopping this task: let it
        task.uncancel()  # our own cancel: the request ended with its client
    except GatewayError as exc:
        state.finished = True
        await send_error(send, exc)
    except Exception:
        state.finished = True
        await internal_error(send, PATH)
    finally:
        state.finished = True
        watcher.cancel()


async def _send_stream(send: Send, outcome: ChatOutcome, state: _Exchange) -> None:
    stream = outcome.stream
    started = False
    try:
        # the first events are already in hand, so this costs no wait; a bug in relaying them is still a
        # plain 500 here, before the headers are out
        first = await anext(stream, None)
        await send({"type": "http.response.start", "status": 200,
                    "headers": SSE_HEADERS + encode_headers(outcome.headers)})
        started = True
        if first is not None:
            await send({"type": "http.response.body", "body": first, "more_body": True})
            async for chunk in stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        state.finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except Exception:
        if not started:
            raise
        # headers are out, so no status can change: end the stream with an error event instead
        log.exception("unexpected error while streaming %s", PATH)
        state.finished = True
        await send({"type": "http.response.body", "more_body": False,
                    "body": sse_error_event(GatewayError("internal error in the gateway"))})
    finally:
        # a stream left early ends here: its relay closes the upstream, logs the record, frees the runtime
        await stream.aclose()
