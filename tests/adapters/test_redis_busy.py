"""Busy is not down: a burst that queues Redis calls, or an event loop that fires the deadline
late, must never be answered with the outage policy (`open` once admitted 43 of 50 deliveries
against a limit of 30)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from taskforge.adapters.ratelimit import RateLimiter
from taskforge.adapters.redis_client import (
    RedisBusyError,
    RedisConnection,
    RedisSettings,
    RedisUnavailableError,
)
from taskforge.adapters.slots import Slots

pytestmark = pytest.mark.anyio


def _burn(seconds: float) -> None:
    """Hold the event loop, as parsing and HMAC-checking a delivery does."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _burst(
    limiter: RateLimiter, n: int, limit: int, cpu: float
) -> list[tuple[bool, bool, bool]]:
    async def one() -> tuple[bool, bool, bool]:
        await asyncio.sleep(0)
        _burn(cpu / 4)
        got = await limiter.acquire("run:ns/wf", limit, 60.0)
        _burn(cpu * 3 / 4)
        return got.allowed, got.degraded, got.busy

    return await asyncio.gather(*(one() for _ in range(n)))


@pytest.mark.parametrize("pool_size,pool_timeout,cpu", [
    (2, 0.05, 0.04),  # a starved loop and a tiny pool: many calls cannot be made in time
    (64, 2.0, 0.004),  # the defaults and a realistic cost per delivery
])
async def test_a_burst_never_fails_open(
    redis_server: object, pool_size: int, pool_timeout: float, cpu: float
) -> None:
    settings = RedisSettings(url=redis_server.url,  # type: ignore[attr-defined]
                             prefix=f"b-{uuid.uuid4().hex[:6]}:", pool_size=pool_size,
                             pool_timeout=pool_timeout, rate_limit_policy="open")
    conn = RedisConnection(settings)
    started = time.monotonic()
    try:
        answers = await _burst(RateLimiter(conn), 50, 30, cpu)
    finally:
        await conn.aclose()
    took = time.monotonic() - started
    allowed = sum(a for a, _, _ in answers)
    busy = sum(b for _, _, b in answers)
    assert not any(d for _, d, _ in answers), "a busy pool was taken for an outage"
    assert allowed <= 30
    assert conn.healthy
    if pool_size == 64:
        if took < settings.deadline:
            # No call can have reached its deadline and no turn was waited for: the default
            # size serves a burst of 50 without refusing any as busy.
            assert allowed == 30 and busy == 0, (allowed, busy, took)
        else:
            # A loaded machine (the burst's 0.2 s of CPU took longer than a deadline): a call
            # that timed out while this loop was starved is busy, asked again soon. Never
            # refused as over the limit before the limit was spent: each busy call may have
            # spent its token in Redis, so admitted + busy reach the limit.
            assert allowed + busy >= 30, (allowed, busy, took)


async def test_pool_exhaustion_is_busy(settings: RedisSettings) -> None:
    conn = RedisConnection(RedisSettings(url=settings.url, prefix=settings.prefix,
                                         pool_size=1, pool_timeout=0.05))
    try:
        slow = asyncio.ensure_future(conn.run(
            lambda: conn.client.blpop(["nothing-here"], timeout=0.3), "blpop"))
        await asyncio.sleep(0.05)
        with pytest.raises(RedisBusyError, match="connections stayed busy"):
            await conn.run(conn.client.ping, "ping")
        await slow
        grant = await Slots(conn).acquire("s", "h", 1)  # a turn is free again
        assert grant.acquired and not grant.busy
        assert conn.healthy
    finally:
        await conn.aclose()


async def test_a_late_deadline_is_busy_not_down(conn: RedisConnection) -> None:
    """The deadline's timer fires half a second late because this process held its event
    loop: that says nothing about Redis, so the call is busy and the connection stays
    healthy. (On an idle loop a hung Redis is still an outage: test_redis_outage.py.)"""

    async def starved() -> None:
        time.sleep(conn.settings.deadline + 0.5)  # noqa: ASYNC251 -- the point: a stalled loop
        await asyncio.sleep(10)

    with pytest.raises(RedisBusyError, match="stalled"):
        await conn.run(starved, "starved")
    assert conn.healthy


async def test_busy_limits_refuse_whatever_the_policy(settings: RedisSettings) -> None:
    conn = RedisConnection(RedisSettings(url=settings.url, prefix=settings.prefix,
                                         pool_size=1, pool_timeout=0.01,
                                         rate_limit_policy="open"))
    try:
        slow = asyncio.ensure_future(conn.run(
            lambda: conn.client.blpop(["nothing-here"], timeout=0.2), "blpop"))
        await asyncio.sleep(0.05)
        got = await RateLimiter(conn).acquire("k", 5, 1.0)
        grant = await Slots(conn).acquire("s", "h", 5)
        await slow
    finally:
        await conn.aclose()
    assert (got.allowed, got.busy, got.degraded) == (False, True, False)
    assert got.retry_after > 0
    assert (grant.acquired, grant.busy, grant.degraded) == (False, True, False)


async def test_unreachable_is_still_an_outage() -> None:
    conn = RedisConnection(RedisSettings(url="redis://127.0.0.1:1/0"))
    try:
        with pytest.raises(RedisUnavailableError):
            await conn.run(conn.client.ping, "ping")
        assert not conn.healthy
    finally:
        await conn.aclose()
