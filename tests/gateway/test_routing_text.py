"""The routing text (embedding.text.prompt_text) on recorded-style agent transcripts (tests/fixtures/transcripts):
it keeps what the user asks and drops tool results, tool-call arguments, images and harness boilerplate."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from router_gateway.embedding.text import MAX_EMBED_CHARS, prompt_text

TRANSCRIPTS = sorted((Path(__file__).parents[1] / "fixtures" / "transcripts").glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript_routing_text_is_the_users_ask(path):
    transcript = load(path)
    text = prompt_text(transcript["request"]["messages"])
    for phrase in transcript["ask"]:
        assert phrase in text, f"{path.name}: the ask {phrase!r} is missing from {text!r}"
    for phrase in transcript["not_in_routing_text"]:
        assert phrase not in text, f"{path.name}: {phrase!r} (tool output / boilerplate) leaked into {text!r}"


def test_three_transcripts_cover_the_cases():
    assert {p.stem for p in TRANSCRIPTS} >= {"coding_agent_tool_loop", "coding_agent_content_parts",
                                             "retrieval_chat"}


def test_every_step_of_a_tool_loop_routes_on_the_same_ask():
    """Each model call of the loop adds tool output only: the router must see the same request each time."""
    messages = load(TRANSCRIPTS[0].with_name("coding_agent_tool_loop.json"))["request"]["messages"]
    texts = {prompt_text(messages[:n]) for n in range(2, len(messages) + 1)}
    assert len(texts) == 1


def test_same_harness_different_asks_route_differently():
    base = load(TRANSCRIPTS[0].with_name("coding_agent_content_parts.json"))["request"]["messages"]
    other = copy.deepcopy(base)
    other[1]["content"][1]["text"] = "Add a --dry-run flag to the deploy script."
    a, b = prompt_text(base), prompt_text(other)
    assert a != b and "--dry-run" in b and "--dry-run" not in a


def test_plain_text_is_unchanged_so_embedding_caches_stay_valid():
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "  first  question\n\n\n\nwith blank lines "},
                {"role": "assistant", "content": "ok"}, {"role": "user", "content": "second <b>bold</b> one"}]
    assert prompt_text(messages) == "You are terse.\n  first  question\n\n\n\nwith blank lines \nsecond <b>bold</b> one"


def test_images_and_responses_api_parts():
    messages = [{"role": "user", "content": [{"type": "input_text", "text": "What breed is this dog?"},
                                             {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                                             {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
    assert prompt_text(messages) == "What breed is this dog?"


def test_large_pasted_code_block_keeps_its_head_and_the_question():
    code = "```python\n" + "\n".join(f"x{i} = compute({i})" for i in range(400)) + "\n```"
    text = prompt_text([{"role": "user", "content": code + "\nWhy is this loop slow?"}])
    assert text.startswith("```python\nx0 = compute(0)") and text.endswith("Why is this loop slow?")
    assert "x399" not in text and len(text) < 600 < len(code)
    small = "```sql\nSELECT 1;\n```\nIs this valid?"
    assert prompt_text([{"role": "user", "content": small}]) == small  # the user's own short code stays


def test_truncation_keeps_the_end():
    text = prompt_text([{"role": "user", "content": "a" * 5000 + " QUESTION"}])
    assert len(text) == MAX_EMBED_CHARS and text.endswith("QUESTION")
