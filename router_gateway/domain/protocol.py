"""The OpenAI chat request as the gateway sees it: a few checked fields, everything else passed on.

Unknown fields are kept (``extra="allow"``) so new sampling parameters reach the expert unchanged.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from router_gateway.domain.errors import BadRequest


class ChatMessage(BaseModel):
    """One message; content may be a string, a list of parts, or null (assistant tool calls)."""

    model_config = ConfigDict(extra="allow")
    role: str = Field(min_length=1)
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    """``stream_options``: the gateway reads ``include_usage``; other options pass through."""

    model_config = ConfigDict(extra="allow")
    include_usage: StrictBool | None = None


class ChatRequest(BaseModel):
    """The fields routing reads; the raw body is forwarded with only ``model`` replaced."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=128)


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate a decoded JSON body; schema errors become 400 naming the field."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        raise BadRequest(f"{param}: {err['msg']}" if param else err["msg"], param=param) from None


def required_capabilities(request: ChatRequest) -> set[str]:
    """Capabilities an expert needs to serve this request."""
    needs: set[str] = set()
    if request.tools:
        needs.add("tools")
    if request.response_format and request.response_format.get("type") in ("json_object", "json_schema"):
        needs.add("json")
    if any(isinstance(m.content, list) and any(p.get("type") == "image_url" for p in m.content
                                               if isinstance(p, dict)) for m in request.messages):
        needs.add("vision")
    return needs


def estimate_prompt_tokens(body_bytes: int, text_chars: int) -> int:
    """Cheap prompt-token estimate for context-window checks and expected cost: ~4 bytes of the
    JSON body a token (errs high, which is the safe side for a context-window check)."""
    return max(1, body_bytes // 4, text_chars // 4)
