"""Which text of a chat request is embedded for routing: one documented function, ``prompt_text``."""
from __future__ import annotations

import re
from typing import Any

#: characters kept; MiniLM sees at most 256 word pieces (~1,000 characters of English) anyway
MAX_EMBED_CHARS = 2000
#: user turns kept from the end of the conversation (turns left empty by the cleaning do not count)
LAST_USER_TURNS = 2
#: characters of the system prompt kept: "you are a SQL assistant" comes first; agent harnesses append
#: pages of tool manuals after it that say nothing about this request
SYSTEM_CHARS = 1000
#: a fenced code block longer than this is cut to its first ``FENCE_HEAD_CHARS``: a pasted file would
#: otherwise fill the embedder's whole window and hide the question asked about it
LARGE_FENCE_CHARS = 1500
FENCE_HEAD_CHARS = 400
#: content-part types that carry text the user typed (chat: "text"; Responses API: "input_text")
TEXT_PARTS = ("text", "input_text")
#: tagged blocks that harnesses and retrieval pipelines inject into user turns: reminders, environment
#: listings, command output, retrieved documents, file contents
HARNESS_TAGS = ("system-reminder", "environment_details", "env", "context", "function_results",
                "tool_result", "tool_output", "file_content", "file", "document", "documents",
                "search_results", "retrieved_context", "local-command-stdout", "local-command-stderr",
                "command-output", "ide_selection", "ide_opened_file", "user-prompt-submit-hook",
                "attachment", "attachments")
_TAGGED = re.compile(r"<(" + "|".join(re.escape(t) for t in HARNESS_TAGS) + r")(?:\s[^>]*)?>.*?</\1\s*>",
                     re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[^\n]*\n.*?```", re.DOTALL)
_BLANK_RUNS = re.compile(r"\n{3,}")


def message_text(content: Any) -> str:
    """Text of one message's ``content``: a string, or the text parts of a content-part list
    (images, files, audio, tool calls and tool results are not text the user typed)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content
                        if isinstance(part, dict) and part.get("type") in TEXT_PARTS)
    return ""


def user_ask(text: str) -> str:
    """One user turn without harness boilerplate: tagged blocks removed, large code fences cut.
    Text with nothing to remove comes back unchanged, whitespace included."""
    cleaned = _TAGGED.sub("", text) if "<" in text else text
    if "```" in cleaned:
        cleaned = _FENCE.sub(_cut_fence, cleaned)
    if cleaned is text or cleaned == text:
        return text if text.strip() else ""
    return _BLANK_RUNS.sub("\n\n", cleaned).strip()


def _cut_fence(match: re.Match) -> str:
    block = match.group(0)
    return block if len(block) <= LARGE_FENCE_CHARS else block[:FENCE_HEAD_CHARS] + "\n...```"


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """The text the router sees: what the user asks, not what tools or the harness added.

    The rule:

    - the first system (or developer) message, its first ``SYSTEM_CHARS`` characters: the task;
    - the last ``LAST_USER_TURNS`` user turns that still hold text after cleaning: what is asked now.
      Cleaning keeps only text parts (no images, files, ``tool_result`` parts), drops tagged harness
      blocks (``<system-reminder>``, ``<environment_details>``, retrieved ``<documents>``, ... see
      ``HARNESS_TAGS``) and cuts fenced code blocks over ``LARGE_FENCE_CHARS`` to their head;
    - never: assistant turns (they mostly repeat and would dilute the embedding), their tool-call
      arguments, and tool / function messages (tool output says what a tool found, not what is asked).

    A user turn that held only tool results (the Anthropic-style tool loop) is empty after cleaning and
    so does not push the real question out of the last turns. When truncating, the *end* of the text is
    kept, because the latest question matters most. Plain text without tags or large fences is left
    exactly as it was sent (so embedding caches keyed on it stay valid).
    """
    system = next((message_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")),
                  "")
    users = []
    for message in reversed(messages):
        if len(users) == LAST_USER_TURNS:
            break
        if message.get("role") == "user":
            ask = user_ask(message_text(message.get("content")))
            if ask:
                users.append(ask)
    parts = [p for p in [system[:SYSTEM_CHARS]] + users[::-1] if p]
    text = "\n".join(parts).strip()
    return text[-MAX_EMBED_CHARS:] if len(text) > MAX_EMBED_CHARS else text
