"""Value checks for experts.yaml that a type alone does not give: values that validate as str or
float yet break the gateway later (a URL with port 99999, a header with CRLF, an infinite number
nested in router params). config.py's validators call these; each raises ValueError with the
message the config error shows after the key and line.
"""
from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit


def has_control_or_space(value: str) -> bool:
    """Whitespace or a control character (CR, LF, NUL, ...): never valid in a URL or header value."""
    return any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)


def check_http_url(value: str) -> str:
    """An http(s) base URL the gateway can call: a host, a port in 1..65535, no spaces or control
    characters, no query or fragment (paths are appended to it). Returns it without a trailing /."""
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    if has_control_or_space(value):
        raise ValueError("must not contain spaces or control characters (CR, LF, tab, ...)")
    parts = urlsplit(value)
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("port must be a number from 1 to 65535")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@): they would not be sent; use api_key")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError("must not have a query or fragment: request paths are appended to it")
    return value.rstrip("/")


def check_header_value(value: str | None) -> str | None:
    """An API key sent as a header: CR/LF would split the header, a space or control character
    is never part of a key."""
    if value is not None and has_control_or_space(value):
        raise ValueError("must not contain spaces or control characters (CR, LF, tab, ...)")
    return value


def check_no_control(value: str | None) -> str | None:
    """Names and file paths: a NUL, CR or LF in them fails later (a crash opening the file, a
    served-model name no upstream knows); spaces are fine."""
    if value is not None and any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("must not contain control characters (NUL, CR, LF, tab, ...)")
    return value


def check_url_path(value: str) -> str:
    if not value.startswith("/") or has_control_or_space(value) or "?" in value or "#" in value:
        raise ValueError("must be a path starting with / without spaces, control characters, ? or #")
    return value


def reject_non_finite(value: Any, where: str = "") -> Any:
    """Free-form values (router params): no inf or NaN anywhere inside."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where or 'value'}: must be a finite number, not {value}")
    if isinstance(value, dict):
        for key, item in value.items():
            reject_non_finite(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            reject_non_finite(item, f"{where}.{i}" if where else str(i))
    return value
