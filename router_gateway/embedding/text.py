"""Which text of a chat request is embedded for routing: one documented function."""
from __future__ import annotations

from typing import Any

#: characters kept; MiniLM sees at most 256 word pieces (~1,000 characters of English) anyway
MAX_EMBED_CHARS = 2000
#: user turns kept from the end of the conversation
LAST_USER_TURNS = 2


def message_text(content: Any) -> str:
    """Text of one message's ``content``: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content
                        if isinstance(part, dict) and part.get("type") == "text")
    return ""


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """The text the router sees: the system prompt plus the last two user turns, truncated.

    Why these: the system prompt names the task ("you are a SQL assistant"), the last user turns say
    what is asked now; assistant turns mostly repeat and would dilute the embedding. The *end* of
    the text is kept when truncating, because the latest question matters most.
    """
    system = [message_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")]
    users = [message_text(m.get("content")) for m in messages if m.get("role") == "user"]
    parts = [p for p in system[:1] + users[-LAST_USER_TURNS:] if p]
    text = "\n".join(parts).strip()
    return text[-MAX_EMBED_CHARS:] if len(text) > MAX_EMBED_CHARS else text
