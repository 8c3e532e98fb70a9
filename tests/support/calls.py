"""Chat messages the tests send, and one checked call through a gateway process."""
from __future__ import annotations

import httpx
import orjson

#: the plain message most in-process tests send
MSG = [{"role": "user", "content": "hello"}]
#: the message of the fault and breaker suites: the fake experts answer it with "answer from <name>"
CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


def call(url: str, model: str, stream: bool, timeout: float = 20.0, messages: list = CAPITAL) -> dict:
    """One request; returns status, who answered, whether the answer is complete, and any error."""
    body = {"model": model, "messages": messages, "stream": stream}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=timeout) as r:
        raw = r.read()
        out = {"status": r.status_code, "expert": r.headers.get("x-router-expert"),
               "retry_after": r.headers.get("retry-after")}
    if out["status"] != 200:
        out["error"] = orjson.loads(raw)["error"]
        assert set(out["error"]) == {"message", "type", "param", "code"}
        return out
    if not stream:
        data = orjson.loads(raw)
        out["complete"] = data["choices"][0]["message"]["content"].startswith("answer from")
        return out
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    assert events[-1] == b"data: [DONE]", events[-3:]
    payloads = [orjson.loads(e[6:]) for e in events[:-1]]
    errors = [p["error"] for p in payloads if "error" in p]
    if errors:
        out["error"] = errors[-1]
        assert set(errors[-1]) == {"message", "type", "param", "code"}
    text = "".join(c["delta"].get("content") or "" for p in payloads for c in p.get("choices", []))
    out["complete"] = not errors and text.startswith("answer from") and \
        any(c.get("finish_reason") == "stop" for p in payloads for c in p.get("choices", []))
    return out
