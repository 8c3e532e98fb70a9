"""A bound on how deeply a client's JSON may nest.

Why: orjson decodes up to 1,024 levels but encodes only 254, and the gateway re-encodes what clients
send (the body forwarded to the expert, feedback's extra fields in the log): a body nested 255 to 1,024
deep decoded fine and then failed as a 500. Refusing it at the door makes it the 400 it is. 128 levels
leave room for the wrappers the gateway adds and is far beyond any real request (a JSON schema in
``response_format`` or ``tools`` rarely passes 20).
"""
from __future__ import annotations

from typing import Any

MAX_JSON_DEPTH = 128


def json_too_deep(raw: bytes, value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the decoded ``value`` nests more than ``limit`` arrays/objects deep.

    Cheap for ordinary bodies: fewer than ``limit`` brackets in the raw bytes (counted in C) cannot nest
    deeper, so the walk over the decoded value only runs for bodies with many brackets."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
