"""Rate limits in Redis: GCRA (the generic cell rate algorithm) in one Lua script.

Why GCRA: it is a token bucket stored as a single number per key (the
"theoretical arrival time", TAT), so a decision is one GET and at most one SET,
atomic inside the script, and a denial knows *exactly* when the next token
returns. The operator requeues the run or step at that moment and never polls.

Semantics, for ``limit`` per ``per`` with bucket size ``burst``:

* tokens come back one every ``per / limit`` seconds (the emission interval);
* up to ``burst`` decisions can be admitted back to back after a quiet period;
* in any window of length ``per`` at most ``limit + burst - 1`` are admitted, and
  over a long window the count converges on ``limit * window / per``.

``burst`` defaults to ``limit`` (the usual token bucket: "30 per minute" lets 30
go at once after a quiet minute, then one every 2 s). A caller that must never
exceed ``limit`` in *any* window passes ``burst=1``; the price is that any
lateness of the caller (operator latency) is capacity lost, because a bucket of
one cannot bank a token.

Time is Redis server time (``TIME`` inside the script), so operator replicas or
a restarted operator with a skewed clock see one consistent schedule. The state
is one timestamp, so callers sharing a key that pass different limits still
agree on the key's history; each judges it by its own limit.

The key expires when the bucket would be full again, since an absent key and a
full bucket mean the same thing.

Fairness: plain GCRA gives the token to whoever asks first, and callers that all
retry at the same retry_after race; measured on a shared key, the winner of one
race tends to win the next (its re-request meets a quieter server), 58:21 over
3 s. So a denied caller that names itself (``waiter``) joins a queue ordered by
priority (higher first), then first denial, and the k-th in line is admitted only
once the schedule holds k + 1 tokens for it:
``allow_at = TAT + interval * cost * (k + 1) - span``. The waiters are served in
order, each gets its own retry_after (no stampede), and since ``allow_at`` only
grows with k the queue can delay an admission relative to plain GCRA but never add
one: the limit holds whatever the queue says. A waiter holds its place on a lease
(its retry_after plus ``grace``) so a caller that never returns stops blocking the
line by itself.

Priorities (spec.priority, issue 19): the queue's score is ``band * 2^40 + n``, ``band``
being PRIORITY_MAX - priority (0 to 2000) and ``n`` the waiter's arrival number from a
counter kept next to the queue, so higher priority sorts first and equal priorities keep
the order of first denial; both parts stay exact in a double (2000 * 2^40 < 2^53). A caller
counts as ahead of it only the waiters of its own or a better band, so an urgent run can be
admitted past a queue of lower ones, never past the limit. Keys are per namespace
(engine/limits.py), so a priority reorders one tenant's waiters only; a waiter whose
priority changes is re-banded at its next call, keeping its arrival number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from taskforge.adapters.redis_client import (
    RedisBusyError,
    RedisConnection,
    RedisUnavailableError,
)
from taskforge.api.timing import PRIORITY_MAX, PRIORITY_MIN

log = logging.getLogger(__name__)

# KEYS: bucket (the TAT), waiters (zset: band * 2^40 + arrival number), leases (zset: come
# back by, µs), arrival counter. ARGV: emission interval µs (may be fractional), burst span µs
# (interval * burst), cost, waiter id ('' for none), grace µs, band (PRIORITY_MAX - priority,
# 0 to 2000: lower goes first). Returns {allowed, retry_after µs, tokens left, ahead}.
# Numbers passed to redis.call are formatted with %.17g: Lua's default (%.14g) would
# drop the last digits of a microsecond timestamp.
GCRA_LUA = """
local interval = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local waiter = ARGV[4]
local grace = tonumber(ARGV[5])
local band = tonumber(ARGV[6])
local STRIDE = 1099511627776
local function num(x) return string.format('%.17g', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ahead = 0
local queued = false
if redis.call('EXISTS', KEYS[3]) == 1 then
  local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', num(now))
  for i = 1, #stale do redis.call('ZREM', KEYS[2], stale[i]) end
  if #stale > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', num(now)) end
  local mine = false
  if waiter ~= '' then mine = redis.call('ZSCORE', KEYS[2], waiter) end
  if mine then
    queued = true
    mine = tonumber(mine)
    local want = band * STRIDE + mine % STRIDE
    if want ~= mine then
      redis.call('ZADD', KEYS[2], num(want), waiter)
      mine = want
    end
    ahead = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. num(mine))
  elseif waiter ~= '' then
    ahead = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. num((band + 1) * STRIDE))
  else
    ahead = redis.call('ZCARD', KEYS[2])
  end
end
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local function tokens(at)
  local n = math.floor((span - (at - now)) / interval + 1e-6)
  if n < 0 then n = 0 end
  return n
end
local allow_at = tat + interval * cost * (ahead + 1) - span
if now >= allow_at then
  local new_tat = tat + interval * cost
  local ttl_ms = math.ceil((new_tat - now) / 1000)
  if ttl_ms < 1 then ttl_ms = 1 end
  redis.call('SET', KEYS[1], num(new_tat), 'PX', num(ttl_ms))
  if queued then
    redis.call('ZREM', KEYS[2], waiter)
    redis.call('ZREM', KEYS[3], waiter)
  end
  return {1, 0, tokens(new_tat), ahead}
end
if waiter ~= '' then
  if not queued then
    local seq = redis.call('INCR', KEYS[4]) % STRIDE
    redis.call('ZADD', KEYS[2], num(band * STRIDE + seq), waiter)
  end
  redis.call('ZADD', KEYS[3], num(allow_at + grace), waiter)
  local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  local until_ms = num(math.ceil(tonumber(last[2]) / 1000))
  redis.call('PEXPIREAT', KEYS[2], until_ms)
  redis.call('PEXPIREAT', KEYS[3], until_ms)
  redis.call('PEXPIREAT', KEYS[4], until_ms)
end
return {0, math.ceil(allow_at - now), tokens(tat), ahead}
"""

# KEYS: bucket. ARGV: µs to move the TAT back (interval * cost). Never below now: a refund
# cannot bank more than a full bucket.
REFUND_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) - tonumber(ARGV[1])
if tat <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
local ttl_ms = math.ceil((tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', string.format('%.17g', ttl_ms))
return 1
"""


@dataclass(frozen=True)
class Admission:
    """One rate-limit decision.

    ``retry_after`` is 0 when allowed; otherwise the seconds until this caller
    would be admitted (exact, from Redis time, counting the waiters ahead): the
    requeue delay to use. ``remaining`` is the tokens left in the bucket, ``ahead``
    the waiters queued before this caller. ``degraded`` means Redis was unreachable
    and the answer is the configured outage policy, not a measurement. ``busy`` means
    this process could not ask Redis in time (see RedisBusyError): always a refusal with a
    short retry_after, whatever the policy, because a burst is exactly when a limit must hold.
    """

    allowed: bool
    retry_after: float
    remaining: int = 0
    ahead: int = 0
    degraded: bool = False
    busy: bool = False


class RateLimiter:
    """Per-workflow run-start limits and per-key step-start limits; same algorithm.

    ``grace`` is how late a queued waiter may come back (after its retry_after)
    before it loses its place; a waiter that never returns (cancelled run, crashed
    operator) thus holds up the line for at most its wait plus ``grace``.
    """

    def __init__(self, conn: RedisConnection, grace: float = 2.0) -> None:
        self._conn = conn
        self._grace_us = round(grace * 1_000_000)
        self._script = conn.client.register_script(GCRA_LUA)
        self._refund = conn.client.register_script(REFUND_LUA)

    def key(self, key: str) -> str:
        """The Redis key for limiter key ``key``: ``<prefix>rl:<key>`` (the waiter queue
        uses ``...:q`` and ``...:l`` next to it)."""
        return self._conn.key("rl:" + key)

    async def acquire(
        self,
        key: str,
        limit: int,
        per_seconds: float,
        cost: int = 1,
        *,
        burst: int | None = None,
        waiter: str | None = None,
        priority: int = 0,
    ) -> Admission:
        """Take ``cost`` tokens from ``key`` (``limit`` per ``per_seconds``, bucket size
        ``burst``, default ``limit``) if they are there; otherwise say when they will be.

        ``waiter`` (a run uid, or ``run-uid/step``) queues a denied caller: callers
        are then admitted in the order of their first denial and each is told a
        different time, so a contended key is shared fairly and nobody stampedes.
        A caller without ``waiter`` queues behind every waiter but keeps no place.
        ``priority`` (clamped to the CRD's range) orders waiters: higher first, then
        first denial.

        Never raises for Redis trouble: an unreachable Redis yields the outage
        policy with ``degraded=True`` within the connection deadline. Raises
        ValueError for arguments that could never be admitted.
        """
        size = limit if burst is None else burst
        if limit < 1 or per_seconds <= 0:
            raise ValueError(f"rate limit needs limit >= 1 and per > 0: {limit} per {per_seconds}s")
        if cost < 1 or cost > size:
            raise ValueError(f"cost {cost} can never fit a bucket of {size}")
        interval_us = per_seconds * 1_000_000.0 / limit
        base = self.key(key)
        args: list[str | int] = [
            repr(interval_us), repr(interval_us * size), cost, waiter or "", self._grace_us,
            PRIORITY_MAX - max(PRIORITY_MIN, min(priority, PRIORITY_MAX)),
        ]
        try:
            reply = await self._conn.run(
                lambda: self._script(
                    keys=[base, base + ":q", base + ":l", base + ":n"], args=args
                ),
                f"rate limit {key!r}",
            )
        except RedisBusyError as err:
            log.debug("rate limit %r not checked (busy): %s", key, err)
            return Admission(False, self._conn.settings.closed_retry_after, busy=True)
        except RedisUnavailableError as err:
            return self._outage(key, err)
        allowed, retry_us, remaining, ahead = (int(x) for x in reply)
        return Admission(bool(allowed), retry_us / 1_000_000.0, remaining, ahead)

    async def refund(self, key: str, limit: int, per_seconds: float, cost: int = 1) -> None:
        """Give back ``cost`` tokens taken from ``key`` for work that then did not happen (a
        webhook run that could not be created, or already existed). Raises RedisCallError;
        a lost refund only costs capacity, never admits too much."""
        interval_us = per_seconds * 1_000_000.0 / limit
        base = self.key(key)
        await self._conn.run(
            lambda: self._refund(keys=[base], args=[repr(interval_us * cost)]),
            f"rate limit refund {key!r}",
        )

    async def leave(self, key: str, waiter: str) -> None:
        """Take ``waiter`` out of the queue (its run was cancelled or deleted), so the
        callers behind it need not wait for its place to lapse. Raises
        RedisCallError; the place lapses by itself anyway."""
        base = self.key(key)

        async def both() -> None:
            async with self._conn.client.pipeline(transaction=True) as pipe:
                pipe.zrem(base + ":q", waiter)
                pipe.zrem(base + ":l", waiter)
                await pipe.execute()

        await self._conn.run(both, f"rate limit leave {key!r}")

    def _outage(self, key: str, err: RedisUnavailableError) -> Admission:
        settings = self._conn.settings
        log.debug("rate limit %r degraded (%s): %s", key, settings.rate_limit_policy, err)
        if settings.rate_limit_policy == "open":
            return Admission(True, 0.0, degraded=True)
        return Admission(False, settings.closed_retry_after, degraded=True)
