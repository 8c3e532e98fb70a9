"""Per-key rate limits (requests and tokens per minute) and budgets (USD per UTC day / month).

``admit(key)`` runs before routing and raises RateLimited (429 with Retry-After) or BudgetExhausted
(429 ``insufficient_quota``); ``record(key, tokens, cost)`` runs when the request's log record is
written, with the tokens and cost the expert reported. Windows slide over the last 60 s.

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

from router_gateway.auth import ApiKey
from router_gateway.errors import BudgetExhausted, RateLimited

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


class LocalLimiter:
    """Sliding-window counters and period spend in this process."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self._requests: dict[str, deque[float]] = defaultdict(deque)
        self._tokens: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._spend: dict[tuple[str, str], float] = defaultdict(float)  # (key id, day/month label) -> USD

    async def admit(self, key: ApiKey) -> None:
        self.check(key)

    def check(self, key: ApiKey) -> None:
        now = self.clock()
        day, month, day_left, month_left = periods(now)
        if key.budget_usd_day is not None and self._spend[(key.id, day)] >= key.budget_usd_day:
            raise budget_spent("day", key, key.budget_usd_day, day_left)
        if key.budget_usd_month is not None and self._spend[(key.id, month)] >= key.budget_usd_month:
            raise budget_spent("month", key, key.budget_usd_month, month_left)
        if key.tpm is not None:
            tokens = self._trim(self._tokens[key.id], now)
            if sum(t for _, t in tokens) >= key.tpm:
                raise rate_limited(f"{key.tpm} tokens per minute", key, tokens[0][0] + WINDOW_S - now)
        if key.rpm is not None:
            stamps = self._trim(self._requests[key.id], now)
            if len(stamps) >= key.rpm:
                raise rate_limited(f"{key.rpm} requests per minute", key, stamps[0] + WINDOW_S - now)
            stamps.append(now)

    @staticmethod
    def _trim(items: deque, now: float) -> deque:
        while items and (items[0] if isinstance(items[0], float) else items[0][0]) <= now - WINDOW_S:
            items.popleft()
        return items

    async def record(self, key: ApiKey, tokens: int, cost: float) -> None:
        self.add(key.id, tokens, cost)

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
        """Month-to-date spend per key from the request log, so budgets survive restarts."""
        import sqlite3
        if not Path(path).exists():
            return 0
        now = self.clock()
        dt = datetime.fromtimestamp(now, timezone.utc)
        month_start = datetime(dt.year, dt.month, 1, tzinfo=timezone.utc).timestamp()
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute("SELECT ts, json_extract(data, '$.key_id'), json_extract(data, '$.cost_usd') "
                              "FROM requests WHERE ts >= ? AND json_extract(data, '$.key_id') IS NOT NULL",
                              (month_start,)).fetchall()
        except sqlite3.Error as exc:
            log.warning("budgets not seeded from the request log: %s", exc)
            return 0
        finally:
            db.close()
        for ts, key_id, cost in rows:
            if cost:
                day, month, _, _ = periods(ts)
                self._spend[(key_id, day)] += cost
                self._spend[(key_id, month)] += cost
        return len(rows)


# KEYS: requests zset, tokens zset, day spend, month spend
# ARGV: now_ms, rpm, tpm, budget_day, budget_month, member ('' = no limit)
ADMIT_LUA = """
local now = tonumber(ARGV[1])
local window = 60000
if ARGV[4] ~= '' and tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[4]) then
  return {'budget_day', 0}
end
if ARGV[5] ~= '' and tonumber(redis.call('GET', KEYS[4]) or '0') >= tonumber(ARGV[5]) then
  return {'budget_month', 0}
end
if ARGV[3] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  local total = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    total = total + tonumber(string.match(m, '^(%d+):'))
  end
  if total >= tonumber(ARGV[3]) then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
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
return {'ok', '0'}
"""


def _opt(value) -> str:
    return "" if value is None else repr(value)


class SharedLimiter:
    """Counters in Redis (through a SharedState); the local twin serves while Redis is down."""

    def __init__(self, shared, local: LocalLimiter):
        self.shared = shared
        self.local = local
        self._pending: list[tuple[str, int, float, float]] = []  # recorded while Redis was down
        self._script = None

    def _keys(self, key_id: str, now: float) -> list[str]:
        day, month, _, _ = periods(now)
        p = self.shared.prefix
        return [f"{p}rl:{key_id}:req", f"{p}rl:{key_id}:tok", f"{p}spend:{key_id}:{day}", f"{p}spend:{key_id}:{month}"]

    async def admit(self, key: ApiKey) -> None:
        redis = self.shared.client()
        if redis is None:
            return self.local.check(key)
        now = time.time()
        if self._script is None:
            self._script = redis.register_script(ADMIT_LUA)
        try:
            verdict, retry_ms = await self._script(
                keys=self._keys(key.id, now),
                args=[int(now * 1000), _opt(key.rpm), _opt(key.tpm), _opt(key.budget_usd_day),
                      _opt(key.budget_usd_month), uuid.uuid4().hex])
        except Exception as exc:  # noqa: BLE001 - any Redis failure means: serve on local state
            self.shared.mark_down(exc)
            return self.local.check(key)
        verdict = verdict.decode() if isinstance(verdict, bytes) else verdict
        if verdict == "ok":
            return None
        _, _, day_left, month_left = periods(now)
        if verdict == "budget_day":
            raise budget_spent("day", key, key.budget_usd_day, day_left)
        if verdict == "budget_month":
            raise budget_spent("month", key, key.budget_usd_month, month_left)
        limit = f"{key.rpm} requests per minute" if verdict == "rpm" else f"{key.tpm} tokens per minute"
        raise rate_limited(limit, key, float(retry_ms) / 1000.0)

    async def record(self, key: ApiKey, tokens: int, cost: float) -> None:
        now = time.time()
        self.local.add(key.id, tokens, cost, now)
        if self.shared.client() is None or not await self._push([(key.id, tokens, cost, now)]):
            self._pending.append((key.id, tokens, cost, now))

    async def _push(self, items: list[tuple[str, int, float, float]]) -> bool:
        redis = self.shared.client()
        if redis is None:
            return False
        pipe = redis.pipeline(transaction=False)
        for key_id, tokens, cost, at in items:
            req, tok, day, month = self._keys(key_id, at)
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
