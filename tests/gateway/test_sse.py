"""SSE re-framing of upstream bytes: the same events however the bytes are split into reads, and a
bounded event size (an upstream that never sends the blank line is an upstream failure)."""
from __future__ import annotations

import asyncio
import random

import pytest

from router_gateway.forwarding.sse import EventTooLarge, is_done, sse_batches
from router_gateway.forwarding.upstream import UpstreamBodyError

STREAM = (b"data: a\n\ndata: bb\r\n\r\ndata: c\nid: 3\n\n: comment\n\n\n\ndata: {\"x\": \"\\n\"}\n\n"
          b"data: [DONE]\n\n")


async def _collect(chunks, **kw) -> list[list[bytes]]:
    async def source():
        for chunk in chunks:
            yield chunk
    return [batch async for batch in sse_batches(source(), **kw)]


def events(chunks, **kw) -> list[bytes]:
    return [event for batch in asyncio.run(_collect(chunks, **kw)) for event in batch]


def test_any_split_into_reads_gives_the_same_events():
    whole = events([STREAM])
    assert whole == [b"data: a\n\n", b"data: bb\n\n", b"data: c\nid: 3\n\n", b": comment\n\n",
                     b'data: {"x": "\\n"}\n\n', b"data: [DONE]\n\n"]
    rng = random.Random(14)
    for _ in range(2000):  # every separator split at every place, CRLF halves included
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 12)))
        reads = [STREAM[i:j] for i, j in zip([0, *cuts], [*cuts, len(STREAM)])]
        assert events(reads) == whole, reads
    assert events([bytes([b]) for b in STREAM]) == whole  # one byte a read


def test_an_event_without_its_blank_line_is_bounded():
    reads = [b"data: "] + [b"x" * 1000] * 50
    with pytest.raises(EventTooLarge) as caught:
        events(reads, max_event_bytes=20_000)
    assert isinstance(caught.value, UpstreamBodyError)  # the forwarder treats it as a broken body
    # events under the limit pass, also when the limit is met across many reads
    assert events([b"data: ", b"y" * 9000, b"\n", b"\ndata: [DONE]\n\n"], max_event_bytes=10_000) == \
        [b"data: " + b"y" * 9000 + b"\n\n", b"data: [DONE]\n\n"]


def test_a_last_event_without_its_blank_line_still_comes_out():
    assert events([b"data: a\n\ndata: tail\n"]) == [b"data: a\n\n", b"data: tail\n\n"]


def test_done_with_or_without_the_space():
    assert is_done(b"data: [DONE]\n\n") and is_done(b"data:[DONE]\n\n") and not is_done(b"data: {}\n\n")
