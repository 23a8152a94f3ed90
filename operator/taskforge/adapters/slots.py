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

Step keys shared across workflows pass ``rank=0``: there is no global creation
order across workflows, and first come first served is the documented rule.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from taskforge.adapters.redis_client import (
    RedisBusyError,
    RedisConnection,
    RedisUnavailableError,
)

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


class Slots:
    """Leases on concurrency slots, keyed ``<prefix>slot:<key>``."""

    DEFAULT_TTL = 60.0

    def __init__(self, conn: RedisConnection) -> None:
        self._conn = conn
        self._acquire = conn.client.register_script(ACQUIRE_LUA)
        self._renew = conn.client.register_script(RENEW_LUA)
        self._holders = conn.client.register_script(HOLDERS_LUA)

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
        try:
            reply = await self._conn.run(
                lambda: self._acquire(
                    keys=[redis_key], args=[holder, max_active, _ms(ttl), rank]
                ),
                f"slot {key!r}",
            )
        except RedisBusyError as err:
            log.debug("slot %r not checked (busy): %s", key, err)
            return SlotGrant(False, 0, self._conn.settings.closed_retry_after, busy=True)
        except RedisUnavailableError as err:
            settings = self._conn.settings
            log.debug("slot %r degraded (%s): %s", key, settings.rate_limit_policy, err)
            if settings.rate_limit_policy == "open":
                return SlotGrant(True, 0, 0.0, degraded=True)
            return SlotGrant(False, 0, settings.closed_retry_after, degraded=True)
        acquired, active, wait_ms = (int(x) for x in reply)
        return SlotGrant(bool(acquired), active, max(wait_ms, 0) / 1000.0)

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


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
