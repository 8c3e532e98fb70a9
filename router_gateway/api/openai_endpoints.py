"""The OpenAI endpoints beyond chat, served by the same handler and ChatService as chat completions.

- ``POST /v1/responses``: the Responses API, routed with the chat policy (a profile, or an expert by
  name), plain or streamed (the expert's event stream is passed through as it comes). For routing its
  body reads as a chat request: ``instructions`` is the system message, ``input`` items the turns
  (``function_call`` an assistant turn, ``function_call_output`` a tool message), ``max_output_tokens``
  the token limit, ``text.format`` the response format. The id of each answer is remembered with the
  expert that holds it, so a later ``previous_response_id`` goes back there.
- ``POST /v1/completions`` and ``POST /v1/embeddings``: forwarded to the expert named in ``model``
  (embeddings never fall back to another expert: another model's vectors mean something else).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import orjson

from router_gateway.domain.config import GatewayConfig
from router_gateway.domain.errors import BadRequest
from router_gateway.domain.protocol import ChatRequest, parse_chat_request
from router_gateway.forwarding.result import ForwardResult
from router_gateway.pipeline import CHAT, Endpoint

RESPONSES = Endpoint("responses", "/responses",
                     params=(("messages", "input"), ("max_tokens", "max_output_tokens"),
                             ("response_format", "text.format")))
COMPLETIONS = Endpoint("completions", "/completions", params=(("messages", "prompt"),))
EMBEDDINGS = Endpoint("embeddings", "/embeddings", fallbacks=False, params=(("messages", "input"),))


@dataclass(frozen=True)
class Route:
    """How one path's body becomes the request routing reads."""

    endpoint: Endpoint
    parse: Callable[[Any, GatewayConfig], ChatRequest]
    sessions: bool  # routed by a profile, so session affinity applies


def _parse_chat(body: Any, config: GatewayConfig) -> ChatRequest:
    return parse_chat_request(body)


def parse_responses(body: Any, config: GatewayConfig) -> ChatRequest:
    """A Responses API body as the chat request routing reads (the body itself is forwarded as sent)."""
    body = _object(body)
    messages = [{"role": "system", "content": body["instructions"]}] if isinstance(body.get("instructions"), str) \
        else []
    raw = body.get("input")
    if isinstance(raw, str):
        messages.append({"role": "user", "content": raw})
    elif isinstance(raw, list):
        messages += [m for m in (_input_message(item) for item in raw) if m is not None]
    elif raw is not None or not body.get("previous_response_id"):
        raise BadRequest("input: a string or a list of input items is required", param="input")
    if not any(m["role"] == "user" for m in messages):
        messages.append({"role": "user", "content": ""})  # e.g. only tool outputs after a previous response
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    chat = {"model": body.get("model"), "messages": messages, "stream": body.get("stream") is True,
            "max_tokens": body.get("max_output_tokens"), "tools": body.get("tools") or None,
            "response_format": fmt if isinstance(fmt, dict) else None}
    return _checked(chat, RESPONSES)


def _input_message(item: Any) -> dict | None:
    if not isinstance(item, dict):
        raise BadRequest("input: each item must be an object", param="input")
    kind = item.get("type", "message")
    if kind == "message" and isinstance(item.get("role"), str):
        content = item.get("content")
        return {"role": item["role"], "content": content if isinstance(content, (str, list)) else None}
    if kind == "function_call":
        return {"role": "assistant", "content": None}
    if kind in ("function_call_output", "custom_tool_call_output"):
        return {"role": "tool", "content": None}
    return None  # reasoning, item references, ...: nothing the router reads


def parse_completions(body: Any, config: GatewayConfig) -> ChatRequest:
    body = _object(body)
    _named_expert(body, config, COMPLETIONS)
    prompt = body.get("prompt")
    return _checked({"model": body.get("model"), "messages": [{"role": "user", "content": _joined(prompt)}],
                     "stream": body.get("stream") is True, "max_tokens": body.get("max_tokens")}, COMPLETIONS)


def parse_embeddings(body: Any, config: GatewayConfig) -> ChatRequest:
    body = _object(body)
    _named_expert(body, config, EMBEDDINGS)
    if "input" not in body:
        raise BadRequest("input: required", param="input")
    return _checked({"model": body.get("model"), "messages": [{"role": "user", "content": _joined(body["input"])}]},
                    EMBEDDINGS)


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _named_expert(body: dict, config: GatewayConfig, endpoint: Endpoint) -> None:
    model = body.get("model")
    if isinstance(model, str) and model in config.profiles:
        raise BadRequest(f"/v1/{endpoint.name} is forwarded to a named expert, not routed: set model to one of "
                         f"{', '.join(config.experts)}", param="model", code="model_not_supported")


def _joined(value: Any) -> str:
    """Text of a prompt / input that may be a string, a list of strings or token ids."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(v for v in value if isinstance(v, str))
    return ""


def _checked(chat: dict, endpoint: Endpoint) -> ChatRequest:
    try:
        return parse_chat_request(chat)
    except BadRequest as exc:
        head = (exc.param or "").split(".")[0]
        exc.param = dict(endpoint.params).get(head, head) or None
        raise


def response_recorder(body: dict, result_store: Callable[[str, str], None]) -> Callable[[ForwardResult], None]:
    """``CallContext.on_result`` for /v1/responses: remember response id -> expert (unless store is off)."""
    def on_result(result: ForwardResult) -> None:
        if body.get("store") is False:
            return
        if result.stream is None:
            try:
                rid = orjson.loads(result.body).get("id")
            except (orjson.JSONDecodeError, AttributeError):
                return
            if isinstance(rid, str):
                result_store(rid, result.expert)
        else:
            result.stream.tap(_created_watcher(lambda rid: result_store(rid, result.expert)))
    return on_result


def _created_watcher(remember: Callable[[str], None]) -> Callable[[bytes], None]:
    """A tap on the event stream (it passes untouched): take the response id from ``response.created``."""
    seen = False

    def watch(chunk: bytes) -> None:
        nonlocal seen
        if not seen and b"response.created" in chunk:
            seen = _remember_created(chunk, remember)
    return watch


def _remember_created(chunk: bytes, remember: Callable[[str], None]) -> bool:
    for event in chunk.split(b"\n\n"):
        if b"response.created" not in event or b"data:" not in event:
            continue
        try:
            data = orjson.loads(event.split(b"data:", 1)[1])
            rid = data["response"]["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
        if isinstance(rid, str):
            remember(rid)
            return True
    return False


ROUTES: dict[str, Route] = {
    "/v1/chat/completions": Route(CHAT, _parse_chat, sessions=True),
    "/v1/responses": Route(RESPONSES, parse_responses, sessions=True),
    "/v1/completions": Route(COMPLETIONS, parse_completions, sessions=False),
    "/v1/embeddings": Route(EMBEDDINGS, parse_embeddings, sessions=False),
}
