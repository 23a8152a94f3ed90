"""Redis going away under a live client: the limiter and the slots follow the outage
policy within the deadline, shipping fails with a clear error, and the same client
works again once redis-server is back on its port (with an empty script cache)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from localcluster.redis_server import RedisServer  # importable once conftest ran
from taskforge.adapters.deadletter import DeadLetterStream
from taskforge.adapters.ratelimit import RateLimiter
from taskforge.adapters.redis_client import (
    Policy,
    RedisConnection,
    RedisSettings,
    RedisUnavailableError,
)
from taskforge.adapters.slots import Slots

pytestmark = pytest.mark.anyio

RECORD = {"id": "uid-9/deploy", "workflow": "release", "namespace": "ns", "run": "release-9",
          "step": "deploy", "params": {}, "error": "exit 1", "attempts": 3,
          "failedAt": "2026-01-01T00:00:00Z"}


@pytest.fixture(params=["open", "closed"])
async def policy_conn(own_redis: RedisServer, request: pytest.FixtureRequest
                      ) -> AsyncIterator[RedisConnection]:
    policy: Policy = request.param
    settings = RedisSettings(url=own_redis.url, prefix=f"o-{uuid.uuid4().hex[:6]}:",
                             rate_limit_policy=policy)
    conn = RedisConnection(settings)
    try:
        yield conn
    finally:
        await conn.aclose()


async def test_redis_stopped_then_restarted(own_redis: RedisServer,
                                            policy_conn: RedisConnection) -> None:
    conn = policy_conn
    limiter, slots, dlq = RateLimiter(conn), Slots(conn), DeadLetterStream(conn)
    assert (await limiter.acquire("k", 1, 60.0)).allowed  # scripts loaded, pool warm
    assert (await slots.acquire("s", "run-1", 1)).acquired
    budget = conn.settings.deadline + 0.25

    own_redis.stop()
    t0 = time.monotonic()
    a = await limiter.acquire("k", 1, 60.0)
    assert time.monotonic() - t0 < budget
    assert a.degraded
    if conn.settings.rate_limit_policy == "open":
        assert a.allowed and a.retry_after == 0
    else:
        assert not a.allowed and a.retry_after == pytest.approx(1.0)
    g = await slots.acquire("s", "run-2", 1)
    assert g.degraded and g.acquired == (conn.settings.rate_limit_policy == "open")
    t0 = time.monotonic()
    with pytest.raises(RedisUnavailableError, match=rf"127\.0\.0\.1:{own_redis.port}.*ship"):
        await dlq.ship(RECORD)
    assert time.monotonic() - t0 < budget
    assert not conn.healthy and not await conn.ping()

    own_redis.start()  # same port, empty: no persistence, no scripts cached
    a = await limiter.acquire("k", 1, 60.0)
    assert a.allowed and not a.degraded
    assert not (await limiter.acquire("k", 1, 60.0)).allowed
    sid = await dlq.ship(RECORD)
    assert await dlq.ship(RECORD) == sid
    assert conn.healthy


async def test_a_hung_redis_costs_at_most_the_deadline(own_redis: RedisServer) -> None:
    """SIGSTOP: the port accepts connections but nothing answers, the worst case."""
    conn = RedisConnection(RedisSettings(url=own_redis.url, rate_limit_policy="closed"))
    limiter, dlq = RateLimiter(conn), DeadLetterStream(conn)
    pid = own_redis.pid
    assert pid is not None
    try:
        assert (await limiter.acquire("h", 5, 1.0)).allowed
        os.kill(pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            a = await limiter.acquire("h", 5, 1.0)
            assert time.monotonic() - t0 < conn.settings.deadline + 0.25
            assert a.degraded and not a.allowed
            t0 = time.monotonic()
            with pytest.raises(RedisUnavailableError):
                await dlq.ship(RECORD)
            assert time.monotonic() - t0 < conn.settings.deadline + 0.25
        finally:
            os.kill(pid, signal.SIGCONT)
        a = await limiter.acquire("h", 5, 1.0)
        assert a.allowed and not a.degraded
    finally:
        await conn.aclose()
