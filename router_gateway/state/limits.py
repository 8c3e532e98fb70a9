"""Per-key rate limits (requests and tokens per minute) and budgets (USD per UTC day / month).

``admit(key, hold)`` runs before routing and raises RateLimited (429 with Retry-After) or
BudgetExhausted (429 ``insufficient_quota``); once admitted the request holds its expected cost and
tokens (services.holds) so that concurrent requests see them. ``settle(key, hold, tokens, cost)``
runs when the request's log record is written, replacing the hold with the tokens and cost the
expert reported. Windows slide over the last 60 s. A limit of 0 suspends the key (403).

Two implementations share the interface: ``LocalLimiter`` (in process; budgets seeded from the
request log at start, so a restart does not reset a day's spend) and ``SharedLimiter`` (Redis: one
Lua script per admission, one pipelined write per record, so every replica sees the same counters).
While Redis is unreachable the shared limiter admits on its local twin and keeps what it recorded
to push when Redis returns (limits then hold per replica, not in total: documented degradation).
"""
from __future__ import annotations

import logging
import math
import time
import uuid
from collections import defaultdict, deque
from datetime import datetime, timezone
from pathlib import Path

from router_gateway.domain.errors import BudgetExhausted, PermissionDenied, RateLimited
from router_gateway.domain.record import json_path
from router_gateway.state.holds import Hold
from router_gateway.state.keys import ApiKey

log = logging.getLogger("router_gateway.limits")
WINDOW_S = 60.0


def periods(now: float) -> tuple[str, str, float, float]:
    """UTC day and month labels, and seconds until each ends."""
    dt = datetime.fromtimestamp(now, timezone.utc)
    day_end = datetime(dt.year, dt.month, dt.day, tzinfo=timezone.utc).timestamp() + 86400
    month_end = datetime(dt.year + dt.month // 12, dt.month % 12 + 1, 1, tzinfo=timezone.utc).timestamp()
    return dt.strftime("%Y%m%d"), dt.strftime("%Y%m"), day_end - now, month_end - now


def rate_limited(what: str, key: ApiKey, retry_after: float) -> RateLimited:
    seconds = max(1, math.ceil(retry_after))
    return RateLimited(f"rate limit reached for key {key.id}: {what}; retry in {seconds} s",
                       headers={"Retry-After": str(seconds)})


def budget_spent(period: str, key: ApiKey, limit: float, retry_after: float) -> BudgetExhausted:
    return BudgetExhausted(f"key {key.id} has spent its budget of {limit} USD for this {period}",
                           headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


def budget_held(period: str, key: ApiKey, limit: float) -> RateLimited:
    """What is left of the budget is held by requests in flight: retry when they have finished."""
    return RateLimited(f"key {key.id}: requests in flight hold the rest of its budget of {limit} USD for this "
                       f"{period}; retry when they finish", code="budget_in_flight", headers={"Retry-After": "1"})


def check_budget(period: str, key: ApiKey, limit: float | None, spent: float, held: float, left: float) -> None:
    if limit is not None and spent + held >= limit:
        raise budget_spent(period, key, limit, left) if spent >= limit else budget_held(period, key, limit)


def refuse_suspended(key: ApiKey) -> None:
    """A limit of 0 allows nothing: the key is suspended (403, not a 429 that clients would retry)."""
    for name, value in (("rpm", key.rpm), ("tpm", key.tpm), ("budget_usd_day", key.budget_usd_day),
                        ("budget_usd_month", key.budget_usd_month)):
        if value is not None and value <= 0:
            raise PermissionDenied(f"key {key.id} is suspended: its {name} limit is 0", code="key_suspended")


class LocalLimiter:
    """Sliding-window counters, period spend and holds in this process."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self._requests: dict[str, deque[float]] = defaultdict(deque)
        self._tokens: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._spend: dict[tuple[str, str], float] = defaultdict(float)  # (key id, day/month label) -> USD
        self._holds: dict[str, dict[str, Hold]] = defaultdict(dict)  # key id -> hold id -> hold

    async def admit(self, key: ApiKey, hold: Hold | None = None) -> Hold | None:
        return self.check(key, hold)

    def check(self, key: ApiKey, hold: Hold | None = None) -> Hold | None:
        """Raise if a limit is reached (counting the holds of requests in flight); else count the
        request and keep its hold."""
        refuse_suspended(key)
        now = self.clock()
        day, month, day_left, month_left = periods(now)
        held_usd, held_tokens = self._held(key.id, now)
        check_budget("day", key, key.budget_usd_day, self._spend[(key.id, day)], held_usd, day_left)
        check_budget("month", key, key.budget_usd_month, self._spend[(key.id, month)], held_usd, month_left)
        if key.tpm is not None:
            tokens = self._trim(self._tokens[key.id], now)
            if sum(t for _, t in tokens) + held_tokens >= key.tpm:
                # nothing in the window yet: requests in flight hold it, and they end soon
                retry = tokens[0][0] + WINDOW_S - now if tokens else 1.0
                raise rate_limited(f"{key.tpm} tokens per minute", key, retry)
        if key.rpm is not None:
            stamps = self._trim(self._requests[key.id], now)
            if len(stamps) >= key.rpm:
                raise rate_limited(f"{key.rpm} requests per minute", key, stamps[0] + WINDOW_S - now)
            stamps.append(now)
        if hold is not None:
            hold.expires, hold.shared = now + hold.ttl_s, False
            self._holds[key.id][hold.id] = hold
        return hold

    def _held(self, key_id: str, now: float) -> tuple[float, int]:
        """USD and tokens held by this key's requests in flight (lapsed holds dropped)."""
        holds = self._holds.get(key_id)
        if not holds:
            return 0.0, 0
        for hold_id in [h.id for h in holds.values() if h.expires <= now]:
            del holds[hold_id]
        return sum(h.usd for h in holds.values()), sum(h.tokens for h in holds.values())

    @staticmethod
    def _trim(items: deque, now: float) -> deque:
        while items and (items[0] if isinstance(items[0], float) else items[0][0]) <= now - WINDOW_S:
            items.popleft()
        return items

    async def settle(self, key: ApiKey, hold: Hold | None, tokens: int, cost: float) -> None:
        self.release(key.id, hold)
        self.add(key.id, tokens, cost)

    def release(self, key_id: str, hold: Hold | None) -> None:
        if hold is not None:
            hold.settled = True
            self._holds.get(key_id, {}).pop(hold.id, None)

    def add(self, key_id: str, tokens: int, cost: float, at: float | None = None) -> None:
        at = self.clock() if at is None else at
        if tokens:
            self._tokens[key_id].append((at, tokens))
        if cost:
            day, month, _, _ = periods(at)
            self._spend[(key_id, day)] += cost
            self._spend[(key_id, month)] += cost

    def spent(self, key_id: str) -> tuple[float, float]:
        day, month, _, _ = periods(self.clock())
        return self._spend.get((key_id, day), 0.0), self._spend.get((key_id, month), 0.0)

    def seed_from_log(self, path: str | Path) -> int:
        """Month-to-date spend per key (and per profile) from the request log, so budgets survive restarts."""
        import sqlite3
        if not Path(path).exists():
            return 0
        now = self.clock()
        dt = datetime.fromtimestamp(now, timezone.utc)
        month_start = datetime(dt.year, dt.month, 1, tzinfo=timezone.utc).timestamp()
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            # a profile's spend too (profiles.<name>.budget: subject "profile:<name>", capacity.profile_budget)
            key_path, cost_path, profile_path = json_path("key_id"), json_path("cost_usd"), json_path("profile")
            rows = db.execute("SELECT ts, json_extract(data, ?), json_extract(data, ?), json_extract(data, ?) "
                              "FROM requests WHERE ts >= ? AND (json_extract(data, ?) IS NOT NULL OR "
                              "json_extract(data, ?) IS NOT NULL)",
                              (key_path, cost_path, profile_path, month_start, key_path, profile_path)).fetchall()
        except sqlite3.Error as exc:
            log.warning("budgets not seeded from the request log: %s", exc)
            return 0
        finally:
            db.close()
        for ts, key_id, cost, profile in rows:
            # rows written before usage was clamped may hold a negative cost: never a credit
            if isinstance(cost, (int, float)) and math.isfinite(cost) and cost > 0:
                day, month, _, _ = periods(ts)
                for subject in [s for s in (key_id, profile and f"profile:{profile}") if s]:
                    self._spend[(subject, day)] += cost
                    self._spend[(subject, month)] += cost
        return len(rows)


# KEYS: requests zset, tokens zset, day spend, month spend, holds hash (hold id -> "usd:tokens:expiry_ms")
# ARGV: now_ms, rpm, tpm, budget_day, budget_month, member, hold id, hold usd, hold tokens, hold expiry_ms
# ('' = no limit / no hold). Budgets and TPM count the holds of requests in flight on every replica.
ADMIT_LUA = """
local now = tonumber(ARGV[1])
local window = 60000
local held_usd, held_tok = 0, 0
local holds = redis.call('HGETALL', KEYS[5])
for i = 1, #holds, 2 do
  local usd, tok, expiry = string.match(holds[i + 1], '^([^:]+):([^:]+):([^:]+)$')
  if usd == nil or tonumber(expiry) <= now then
    redis.call('HDEL', KEYS[5], holds[i])
  else
    held_usd = held_usd + tonumber(usd)
    held_tok = held_tok + tonumber(tok)
  end
end
for i, period in ipairs({'budget_day', 'budget_month'}) do
  local limit = ARGV[3 + i]
  if limit ~= '' then
    local spent = tonumber(redis.call('GET', KEYS[2 + i]) or '0')
    if spent + held_usd >= tonumber(limit) then
      return {period, spent >= tonumber(limit) and 'spent' or 'held'}
    end
  end
end
if ARGV[3] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  local total = held_tok
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    total = total + tonumber(string.match(m, '^(%d+):'))
  end
  if total >= tonumber(ARGV[3]) then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    if first[2] == nil then return {'tpm', '1000'} end
    return {'tpm', tostring(tonumber(first[2]) + window - now)}
  end
end
if ARGV[2] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {'rpm', tostring(tonumber(first[2]) + window - now)}
  end
  redis.call('ZADD', KEYS[1], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[1], window)
end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[5], ARGV[7], ARGV[8] .. ':' .. ARGV[9] .. ':' .. ARGV[10])
  local ttl = tonumber(ARGV[10]) - now
  if redis.call('PTTL', KEYS[5]) < ttl then redis.call('PEXPIRE', KEYS[5], ttl) end
end
return {'ok', '0'}
"""


def _opt(value) -> str:
    return "" if value is None else repr(value)


class SharedLimiter:
    """Counters and holds in Redis (through a SharedState); the local twin serves while Redis is down."""

    def __init__(self, shared, local: LocalLimiter):
        self.shared = shared
        self.local = local
        # (key id, tokens, cost, at, Redis hold id or '') recorded while Redis was down
        self._pending: list[tuple[str, int, float, float, str]] = []
        self._script = None

    def _keys(self, key_id: str, now: float) -> list[str]:
        day, month, _, _ = periods(now)
        p = self.shared.prefix
        return [f"{p}rl:{key_id}:req", f"{p}rl:{key_id}:tok", f"{p}spend:{key_id}:{day}",
                f"{p}spend:{key_id}:{month}", f"{p}held:{key_id}"]

    async def admit(self, key: ApiKey, hold: Hold | None = None) -> Hold | None:
        refuse_suspended(key)
        redis = self.shared.client()
        if redis is None:
            return self.local.check(key, hold)
        now = time.time()
        if self._script is None:
            self._script = redis.register_script(ADMIT_LUA)
        expires = now + hold.ttl_s if hold is not None else 0.0
        hold_args = [hold.id, repr(float(hold.usd)), str(int(hold.tokens)), str(int(expires * 1000))] \
            if hold is not None else ["", "", "", ""]
        try:
            verdict, detail = await self._script(
                keys=self._keys(key.id, now),
                args=[int(now * 1000), _opt(key.rpm), _opt(key.tpm), _opt(key.budget_usd_day),
                      _opt(key.budget_usd_month), uuid.uuid4().hex, *hold_args])
        except Exception as exc:  # noqa: BLE001 - any Redis failure means: serve on local state
            self.shared.mark_down(exc)
            return self.local.check(key, hold)
        verdict = verdict.decode() if isinstance(verdict, bytes) else verdict
        detail = detail.decode() if isinstance(detail, bytes) else str(detail)
        if verdict == "ok":
            if hold is not None:
                hold.expires, hold.shared = expires, True
            return hold
        _, _, day_left, month_left = periods(now)
        if verdict in ("budget_day", "budget_month"):
            period, limit = ("day", key.budget_usd_day) if verdict == "budget_day" else ("month", key.budget_usd_month)
            if detail == "held":
                raise budget_held(period, key, limit)
            raise budget_spent(period, key, limit, day_left if period == "day" else month_left)
        limit = f"{key.rpm} requests per minute" if verdict == "rpm" else f"{key.tpm} tokens per minute"
        raise rate_limited(limit, key, float(detail) / 1000.0)

    async def settle(self, key: ApiKey, hold: Hold | None, tokens: int, cost: float) -> None:
        """Replace the request's hold with what it used: in Redis (atomically), and in the local twin."""
        now = time.time()
        self.local.release(key.id, hold)  # a hold taken while Redis was down lives here
        self.local.add(key.id, tokens, cost, now)
        item = (key.id, tokens, cost, now, hold.id if hold is not None and hold.shared else "")
        if self.shared.client() is None or not await self._push([item]):
            self._pending.append(item)

    async def _push(self, items: list[tuple[str, int, float, float, str]]) -> bool:
        redis = self.shared.client()
        if redis is None:
            return False
        pipe = redis.pipeline(transaction=True)  # a hold and the spend replacing it change together
        for key_id, tokens, cost, at, hold_id in items:
            req, tok, day, month, held = self._keys(key_id, at)
            if hold_id:
                pipe.hdel(held, hold_id)
            if tokens:
                pipe.zadd(tok, {f"{int(tokens)}:{uuid.uuid4().hex}": int(at * 1000)})
                pipe.pexpire(tok, int(WINDOW_S * 1000))
            if cost:
                pipe.incrbyfloat(day, cost)
                pipe.expire(day, 2 * 86400)
                pipe.incrbyfloat(month, cost)
                pipe.expire(month, 32 * 86400)
        try:
            await pipe.execute()
            return True
        except Exception as exc:  # noqa: BLE001
            self.shared.mark_down(exc)
            return False

    async def resync(self) -> None:
        """Redis is back: push what was recorded while it was away."""
        pending, self._pending = self._pending, []
        if pending and not await self._push(pending):
            self._pending = pending + self._pending
        elif pending:
            log.info("pushed %d usage records kept while Redis was down", len(pending))
