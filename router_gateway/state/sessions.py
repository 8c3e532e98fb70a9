"""Session affinity: the requests of one conversation keep their expert while it stays eligible.

Why: vLLM keeps the KV cache of a conversation's prefix; the next turn on the same server prefills
only the new tokens. On another expert the whole history is prefilled again, and the voice and the
tool behaviour change mid-task.

The session key comes from, in order: the ``x-session-id`` header; the OpenAI body fields
``prompt_cache_key``, ``user``, ``metadata.session_id`` / ``conversation_id`` / ``thread_id``; else a
digest of the conversation's opening (its first system message and first user message), which every
later turn repeats. Keys are hashed with the caller's API key id, so tenants never share a session
and raw user ids never reach headers or logs.

A request keyed only by its opening and holding no assistant turn starts a conversation: it is routed
freely (two people asking the same first question are not one conversation) and the expert it lands
on is remembered for the turns that follow.

The store maps session key -> expert with a TTL, in process, mirrored in Redis when the gateway runs
with ``REDIS_URL`` so every replica sees the same pins. Redis is the authority, but a replica that wrote
or read a pin within the last ``trust_s`` seconds (30) uses its own copy: a GET costs ~80 us of event-loop
CPU (redis-py), most of the affinity budget, and an agent's tool loop sends its turns seconds apart.
So after a session moves on one replica, another may send that session to the old expert for up to
``trust_s`` if it is still eligible there. Without Redis (or while it is away) the local copy serves. The Responses API's ``previous_response_id`` is pinned the same way (response id ->
expert): that response exists only on the expert that produced it.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

import orjson

from router_gateway.embedding.text import message_text

log = logging.getLogger("router_gateway.sessions")

SESSION_HEADER = "x-session-id"
METADATA_KEYS = ("session_id", "conversation_id", "thread_id")
#: how long a response id stays pinned to its expert (vLLM keeps stored responses in memory until restart)
RESPONSE_TTL_S = 24 * 3600.0
MAX_LOCAL_ENTRIES = 200_000
TRUST_S = 30.0


@dataclass(frozen=True)
class SessionRef:
    """Which conversation a request belongs to, as far as the request tells."""

    key: str  # "s-<hex>": what headers and the log show
    source: str  # header | prompt_cache_key | user | metadata | opening
    opening: bool = False  # keyed by its opening and no assistant turn yet: a new conversation
    response_id: str | None = None  # Responses API previous_response_id: a hard pin


@dataclass
class AffinityInfo:
    """What affinity did for one request: for the headers, the log and settling afterwards."""

    ref: SessionRef
    state: str  # new | kept | moved | pinned (previous_response_id) | off
    ttl_s: float = 0.0
    pinned: str | None = None  # the expert the session had before this request
    moved_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"session": self.ref.key, "session_source": self.ref.source, "affinity": self.state,
                "affinity_previous_expert": self.pinned, "affinity_moved_reason": self.moved_reason}


def session_ref(headers: Mapping[str, str], body: dict[str, Any], messages: list[Any],
                key_id: str | None) -> SessionRef | None:
    """The session of a request: header, then body fields, then the opening messages' digest.
    ``messages`` are protocol.ChatMessage (``role``, ``content``)."""
    response_id = body.get("previous_response_id")
    response_id = response_id if isinstance(response_id, str) and response_id else None
    source, value = _explicit_key(headers, body)
    opening = False
    if value is None:
        value = _opening_digest(messages)
        if value is None:
            return SessionRef("", "none", response_id=response_id) if response_id else None
        source, opening = "opening", not any(m.role == "assistant" for m in messages)
    raw = f"{key_id or ''}\0{source}\0{value}".encode("utf-8", "surrogatepass")
    key = "s-" + hashlib.blake2b(raw, digest_size=12).hexdigest()
    return SessionRef(key, source, opening, response_id)


def _explicit_key(headers: Mapping[str, str], body: dict[str, Any]) -> tuple[str, str | None]:
    header = headers.get(SESSION_HEADER)
    if header:
        return "header", header
    for field in ("prompt_cache_key", "user"):
        value = body.get(field)
        if isinstance(value, str) and value:
            return field, value
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        for field in METADATA_KEYS:
            value = metadata.get(field)
            if isinstance(value, str) and value:
                return "metadata", value
    return "", None


def _opening_digest(messages: list[Any]) -> str | None:
    system = next((m for m in messages if m.role in ("system", "developer")), None)
    first_user = next((m for m in messages if m.role == "user"), None)
    if first_user is None:
        return None
    opening = [message_text(system.content) if system else "", message_text(first_user.content)]
    return hashlib.blake2b(orjson.dumps(opening), digest_size=16).hexdigest()


class AffinityStore:
    """key -> expert with a TTL: in process, and in Redis while one is connected (see module doc)."""

    def __init__(self, shared=None, max_entries: int = MAX_LOCAL_ENTRIES,
                 clock: Callable[[], float] = time.monotonic, prefix: str = "rg:affinity:"):
        self.shared = shared  # services.shared_state.SharedState, set once the gateway has it
        self.max_entries = max_entries
        self.clock = clock
        self.prefix = prefix
        self.trust_s = TRUST_S
        self._local: dict[str, tuple[str, float, float]] = {}  # key -> (expert, expires at, trusted until)
        self._writes: set[asyncio.Task] = set()

    def _redis(self):
        return self.shared.client() if self.shared is not None else None

    def lookup(self, key: str) -> Awaitable[str | None] | str | None:
        """The expert for ``key``: a value at once from local state, or an awaitable while Redis is
        connected (start it early, await it late: it overlaps with embedding)."""
        if self._redis() is None:
            return self.get_local(key)
        entry = self._local.get(key)
        if entry is not None and entry[2] > self.clock() and entry[1] > self.clock():
            return entry[0]
        return asyncio.ensure_future(self._get_remote(key))

    def get_local(self, key: str) -> str | None:
        entry = self._local.get(key)
        if entry is None:
            return None
        if entry[1] <= self.clock():
            self._local.pop(key, None)
            return None
        return entry[0]

    async def _get_remote(self, key: str) -> str | None:
        redis = self._redis()
        try:
            value = await redis.get(self.prefix + key)
        except Exception as exc:  # noqa: BLE001 - Redis gone: the local copy serves
            self.shared.mark_down(exc)
            return self.get_local(key)
        if value is None:
            return self.get_local(key)  # written here while Redis was away, not yet pushed
        expert = value.decode()
        self._set_local(key, expert, self._remaining(key))  # trusted again for trust_s
        return expert

    def remaining_s(self, key: str) -> float:
        """Seconds the local entry has left (0 when absent): settle refreshes a pin past half its TTL."""
        entry = self._local.get(key)
        return max(0.0, entry[1] - self.clock()) if entry else 0.0

    def _remaining(self, key: str) -> float:
        return self.remaining_s(key) or 60.0  # learnt from another replica: trust it for a minute locally

    def put(self, key: str, expert: str, ttl_s: float) -> None:
        """Remember ``key`` -> ``expert`` for ``ttl_s``; the Redis write runs off the request path."""
        self._set_local(key, expert, ttl_s)
        redis = self._redis()
        if redis is not None:
            task = asyncio.get_running_loop().create_task(self._put_remote(redis, key, expert, ttl_s))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _put_remote(self, redis, key: str, expert: str, ttl_s: float) -> None:
        try:
            await redis.set(self.prefix + key, expert, px=max(1, int(ttl_s * 1000)))
        except Exception as exc:  # noqa: BLE001
            self.shared.mark_down(exc)

    def _set_local(self, key: str, expert: str, ttl_s: float) -> None:
        self._local.pop(key, None)  # re-insert: dict order is then the eviction order
        now = self.clock()
        self._local[key] = (expert, now + ttl_s, now + self.trust_s)
        if len(self._local) > self.max_entries:
            now = self.clock()
            for stale in [k for k, (_, exp, _t) in self._local.items() if exp <= now]:
                del self._local[stale]
            while len(self._local) > self.max_entries:
                del self._local[next(iter(self._local))]

    async def flush(self) -> None:
        """Wait for queued Redis writes (tests; shutdown)."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)


async def resolve(value: Awaitable[str | None] | str | None) -> str | None:
    """The result of ``AffinityStore.lookup``, whichever form it took."""
    if value is None or isinstance(value, str):
        return value
    return await value
