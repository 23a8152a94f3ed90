"""Concurrency slots as leases in Redis: per-workflow ``maxRuns`` and per-key
``maxRunning`` for steps.

A key is a sorted set: member = holder (a run uid, or ``run-uid/step``), score =
lease expiry in Redis-server milliseconds. Every script first drops expired
leases, so a crashed operator (or a holder nobody renews any more) gives its slot
back after at most one TTL; nothing leaks forever. The holder renews its lease
while the work runs (every TTL/3 is plenty) and releases it when done.

Admission in creation order
---------------------------
Excess runs wait and must start oldest first. The queue is *not* stored in Redis:
the caller passes ``rank``, the number of runs of the same workflow that are older
(by creationTimestamp, then name) and still wait for a slot, which the operator
reads from its own cache (``taskforge.engine.limits.queue_rank``). A run is
admitted only if ``active + rank < max``, i.e. if there is a free slot for it
*after* every older waiter got one. Why not a waiter list in Redis: a waiter that
is deleted or cancelled would block the queue until its entry expired, and the
waiters would need leases and renewals of their own; the operator already knows
exactly who waits, and status is the source of truth. ``max`` itself is enforced
atomically in Redis whatever ``rank`` says, so a stale cache can delay a run
briefly but never over-admit.

Step keys: a queue of places in Redis, by priority
--------------------------------------------------
A step ``concurrency`` key is shared by the runs of many workflows, so the operator has no
one cache list that orders its waiters (building one would scan every run on each acquire).
Its waiters therefore keep places in Redis (:meth:`Slots.acquire_queued`), like the rate
limiter's (adapters/ratelimit.py): ``<key>:q`` orders them by ``band * 2^40 + arrival``
(band = PRIORITY_MAX - priority, so higher priority first, then the order of first refusal;
both parts exact in a double), ``<key>:l`` holds each place's lease (Redis ms) and ``<key>:n``
counts arrivals. A step takes a free slot only if ``active + ahead < max``, ``ahead`` being
the live places before its own. A place lives one TTL and is renewed from the operator's
cache with the slot leases while its step waits (:meth:`Slots.keep_places`), and is dropped
when the step starts, ends or its run is deleted (:meth:`Slots.release`). So a cancelled or
deleted run's place goes at once, and one whose operator crashed or missed the deletion
lapses within a TTL (it then blocks nobody). :meth:`Slots.release` returns the first
waiters so that the operator wakes their runs: a freed slot is handed on at once, not at
the next poll.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskforge.adapters.redis_client import (
    RedisBusyError,
    RedisConnection,
    RedisUnavailableError,
)
from taskforge.engine.limits import priority_band

log = logging.getLogger(__name__)

# Shared prologue: now in ms from Redis time, expired leases dropped.
_PROLOGUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local function keep_until_last_lease()
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
end
"""

# ARGV: holder, max, ttl_ms, rank. Returns {acquired, active, wait_ms}.
ACQUIRE_LUA = _PROLOGUE + """
local holder = ARGV[1]
local max = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local rank = tonumber(ARGV[4])
if redis.call('ZSCORE', KEYS[1], holder) then
  redis.call('ZADD', KEYS[1], now + ttl, holder)
  keep_until_last_lease()
  return {1, redis.call('ZCARD', KEYS[1]), 0}
end
local active = redis.call('ZCARD', KEYS[1])
if active + rank < max then
  redis.call('ZADD', KEYS[1], now + ttl, holder)
  keep_until_last_lease()
  return {1, active + 1, 0}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = ttl
if first[2] then wait = tonumber(first[2]) - now end
return {0, active, wait}
"""

# Shared by the step-key scripts: drop lapsed places (KEYS[2] order, KEYS[3] place leases).
_PLACES = """
local STRIDE = 1099511627776
local function num(x) return string.format('%.17g', x) end
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for i = 1, #stale do redis.call('ZREM', KEYS[2], stale[i]) end
if #stale > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now) end
local function keep_until_last_place()
  local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', KEYS[2], last[2])
    redis.call('PEXPIREAT', KEYS[3], last[2])
    redis.call('PEXPIREAT', KEYS[4], last[2])
  end
end
"""

# KEYS: leases, order, place leases, arrival counter. ARGV: holder, max, ttl_ms, band,
# place_ms. Returns {acquired, active, wait_ms, ahead}.
QUEUED_ACQUIRE_LUA = _PROLOGUE + _PLACES + """
local holder = ARGV[1]
local max = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local band = tonumber(ARGV[4])
local place = tonumber(ARGV[5])
if redis.call('ZSCORE', KEYS[1], holder) then
  redis.call('ZADD', KEYS[1], now + ttl, holder)
  keep_until_last_lease()
  redis.call('ZREM', KEYS[2], holder)
  redis.call('ZREM', KEYS[3], holder)
  return {1, redis.call('ZCARD', KEYS[1]), 0, 0}
end
local mine = redis.call('ZSCORE', KEYS[2], holder)
local ahead
if mine then
  mine = tonumber(mine)
  local want = band * STRIDE + mine % STRIDE
  if want ~= mine then
    redis.call('ZADD', KEYS[2], num(want), holder)
    mine = want
  end
  ahead = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. num(mine))
else
  ahead = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. num((band + 1) * STRIDE))
end
local active = redis.call('ZCARD', KEYS[1])
if active + ahead < max then
  redis.call('ZADD', KEYS[1], now + ttl, holder)
  keep_until_last_lease()
  if mine then
    redis.call('ZREM', KEYS[2], holder)
    redis.call('ZREM', KEYS[3], holder)
  end
  return {1, active + 1, 0, ahead}
end
if not mine then
  local seq = redis.call('INCR', KEYS[4]) % STRIDE
  redis.call('ZADD', KEYS[2], num(band * STRIDE + seq), holder)
end
redis.call('ZADD', KEYS[3], now + place, holder)
keep_until_last_place()
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = ttl
if first[2] then wait = tonumber(first[2]) - now end
return {0, active, wait, ahead}
"""

# KEYS: leases, order, place leases, counter. ARGV: holder, n. Drops the holder's lease and
# place; returns the first n live waiters (the ones a freed slot may be for).
RELEASE_LUA = _PROLOGUE + _PLACES + """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local out = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[2]) - 1)
table.insert(out, 1, removed)
return out
"""

# KEYS: leases, order, place leases, counter. ARGV: place_ms, holders... Extends the
# places that still exist (never creates one); returns how many.
KEEP_PLACES_LUA = _PROLOGUE + _PLACES + """
local kept = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[1]), ARGV[i])
    kept = kept + 1
  end
end
keep_until_last_place()
return kept
"""

# ARGV: holder, ttl_ms. Upsert; returns {held_before (0|1), active}.
RENEW_LUA = _PROLOGUE + """
local held = 0
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then held = 1 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
keep_until_last_lease()
return {held, redis.call('ZCARD', KEYS[1])}
"""

# Returns a flat list holder, ms-left, holder, ms-left, ...
HOLDERS_LUA = _PROLOGUE + """
local out = {}
local rows = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #rows, 2 do
  out[#out + 1] = rows[i]
  out[#out + 1] = tonumber(rows[i + 1]) - now
end
return out
"""


@dataclass(frozen=True)
class SlotGrant:
    """The answer to one acquire.

    ``active`` counts leases under the key after the decision. When not acquired,
    ``retry_after`` is when the oldest lease would lapse if nobody renewed it: a
    fallback poll time. The operator should also wake the next waiter itself when
    a holder releases. ``degraded`` means Redis was unreachable and the answer is
    the configured outage policy; ``busy`` that this process could not ask in time (a
    refusal whatever the policy: busy is not down).
    """

    acquired: bool
    active: int
    retry_after: float
    degraded: bool = False
    busy: bool = False
    ahead: int = 0


class Slots:
    """Leases on concurrency slots, keyed ``<prefix>slot:<key>``."""

    DEFAULT_TTL = 60.0

    def __init__(self, conn: RedisConnection) -> None:
        self._conn = conn
        self._acquire = conn.client.register_script(ACQUIRE_LUA)
        self._renew = conn.client.register_script(RENEW_LUA)
        self._holders = conn.client.register_script(HOLDERS_LUA)
        self._queued = conn.client.register_script(QUEUED_ACQUIRE_LUA)
        self._release = conn.client.register_script(RELEASE_LUA)
        self._keep = conn.client.register_script(KEEP_PLACES_LUA)

    def _keys(self, key: str) -> list[str]:
        base = self.key(key)
        return [base, base + ":q", base + ":l", base + ":n"]

    def key(self, key: str) -> str:
        return self._conn.key("slot:" + key)

    async def acquire(
        self,
        key: str,
        holder: str,
        max_active: int,
        ttl: float = DEFAULT_TTL,
        rank: int = 0,
    ) -> SlotGrant:
        """Take a slot under ``key`` for ``holder`` if fewer than ``max_active`` are held
        and ``rank`` older waiters can still be served first.

        Idempotent: a holder that already has a slot gets it again (renewed),
        whatever the count. Never raises for Redis trouble: the outage policy
        answers with ``degraded=True`` (open admits; the lease is then created by
        the next :meth:`renew` once Redis is back).
        """
        if max_active < 1 or ttl <= 0 or rank < 0:
            raise ValueError(f"bad slot request max={max_active} ttl={ttl} rank={rank}")
        redis_key = self.key(key)
        reply = await self._run_or_degrade(key, lambda: self._acquire(
            keys=[redis_key], args=[holder, max_active, _ms(ttl), rank]))
        if isinstance(reply, SlotGrant):
            return reply
        acquired, active, wait_ms = (int(x) for x in reply)
        return SlotGrant(bool(acquired), active, max(wait_ms, 0) / 1000.0)

    async def _run_or_degrade(self, key: str, script: Callable[[], Any]) -> Any:
        """The script's reply, or the grant the outage policy gives when Redis is busy or
        away (closed: refused with the configured retry; open: admitted, degraded)."""
        try:
            return await self._conn.run(script, f"slot {key!r}")
        except RedisBusyError as err:
            log.debug("slot %r not checked (busy): %s", key, err)
            return SlotGrant(False, 0, self._conn.settings.closed_retry_after, busy=True)
        except RedisUnavailableError as err:
            settings = self._conn.settings
            log.debug("slot %r degraded (%s): %s", key, settings.rate_limit_policy, err)
            if settings.rate_limit_policy == "open":
                return SlotGrant(True, 0, 0.0, degraded=True)
            return SlotGrant(False, 0, settings.closed_retry_after, degraded=True)

    async def acquire_queued(
        self,
        key: str,
        holder: str,
        max_active: int,
        ttl: float = DEFAULT_TTL,
        *,
        priority: int = 0,
        place_ttl: float = DEFAULT_TTL,
    ) -> SlotGrant:
        """Like :meth:`acquire`, but a refused holder keeps a place in the key's Redis queue
        (priority first, then first refusal) for ``place_ttl``, and a free slot goes to
        ``holder`` only when no live place is ahead of it. Calling again keeps the place (and
        re-bands it if the priority changed); taking the slot drops it."""
        if max_active < 1 or ttl <= 0 or place_ttl <= 0:
            raise ValueError(f"bad slot request max={max_active} ttl={ttl} place={place_ttl}")
        keys = self._keys(key)
        args: list[str | int] = [holder, max_active, _ms(ttl), priority_band(priority),
                                 _ms(place_ttl)]
        reply = await self._run_or_degrade(key, lambda: self._queued(keys=keys, args=args))
        if isinstance(reply, SlotGrant):
            return reply
        acquired, active, wait_ms, ahead = (int(x) for x in reply)
        return SlotGrant(bool(acquired), active, max(wait_ms, 0) / 1000.0, ahead=ahead)

    async def release_next(self, key: str, holder: str, first: int) -> tuple[bool, list[str]]:
        """Give back ``holder``'s slot and drop its place, if any; returns whether it held a
        slot and the first ``first`` waiters now in line (their runs are to be woken).
        Raises RedisCallError (the lease and the place then lapse within their TTL)."""
        keys = self._keys(key)
        reply = await self._conn.run(
            lambda: self._release(keys=keys, args=[holder, max(first, 1)]),
            f"slot release {key!r}",
        )
        return bool(int(reply[0])), [_text(x) for x in reply[1:]]

    async def keep_places(
        self, key: str, holders: list[str], place_ttl: float = DEFAULT_TTL
    ) -> int:
        """Extend the places of ``holders`` that still wait under ``key`` (never creates
        one); returns how many. Raises RedisCallError."""
        keys = self._keys(key)
        reply = await self._conn.run(
            lambda: self._keep(keys=keys, args=[_ms(place_ttl), *holders]),
            f"slot places {key!r}",
        )
        return int(reply)

    async def waiters(self, key: str) -> list[str]:
        """The holders waiting under ``key``, first in line first (tests and the CLI)."""
        base = self.key(key)
        rows = await self._conn.run(
            lambda: self._conn.client.zrange(base + ":q", 0, -1), f"slot waiters {key!r}"
        )
        return [_text(x) for x in rows]

    async def renew(self, key: str, holder: str, ttl: float = DEFAULT_TTL) -> bool:
        """Extend ``holder``'s lease to ``ttl`` from now; True if it was still held.

        False means the lease had lapsed (or was granted while Redis was down) and
        has been re-created: the work *is* running, so counting it is the truth,
        even if that puts the key briefly above its max (new admissions wait).
        Raises RedisCallError; the caller logs and tries again next time.
        """
        redis_key = self.key(key)
        reply = await self._conn.run(
            lambda: self._renew(keys=[redis_key], args=[holder, _ms(ttl)]),
            f"slot renew {key!r}",
        )
        return bool(int(reply[0]))

    async def release(self, key: str, holder: str) -> bool:
        """Give the slot back; True if ``holder`` had one. Raises RedisCallError
        (the lease then lapses by itself within its TTL)."""
        redis_key = self.key(key)
        removed = await self._conn.run(
            lambda: self._conn.client.zrem(redis_key, holder), f"slot release {key!r}"
        )
        return int(removed) > 0

    async def holders(self, key: str) -> dict[str, float]:
        """Current holders and seconds left on each lease (for status and the CLI)."""
        redis_key = self.key(key)
        flat = await self._conn.run(
            lambda: self._holders(keys=[redis_key], args=[]), f"slot holders {key!r}"
        )
        return {str(flat[i]): int(flat[i + 1]) / 1000.0 for i in range(0, len(flat), 2)}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
