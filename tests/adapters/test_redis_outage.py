"""Redis going away under a live client: the limiter and the slots follow the outage
policy within the deadline, shipping fails with a clear error, and the same client
works again once redis-server is back on its port (with an empty script cache)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
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


class Clock:
    """Times a call against the connection's deadline, fairly on a loaded machine.

    What the client controls is the deadline; what the scheduler adds (a timer that fires
    late because this process waited for a core) is not the client's. A thread that sleeps
    as long as the deadline from the call's start measures that lateness, and the bound is
    the deadline + 0.25 s + it. A thread, not a task: a client that blocked the event loop
    would make a task late too and excuse itself.
    """

    def __init__(self, conn: RedisConnection) -> None:
        self.deadline = conn.settings.deadline
        self._t0 = 0.0
        self._late: list[float] = []
        self._sleeper: threading.Thread | None = None

    def _sleep(self) -> None:
        time.sleep(self.deadline)
        self._late.append(time.monotonic() - self._t0 - self.deadline)

    def start(self) -> None:
        self._t0, self._late = time.monotonic(), []
        self._sleeper = threading.Thread(target=self._sleep, daemon=True)
        self._sleeper.start()

    async def check(self) -> None:
        took = time.monotonic() - self._t0
        if took < self.deadline + 0.25:  # within the bound whatever the scheduler did
            return
        assert self._sleeper is not None
        await asyncio.to_thread(self._sleeper.join)
        assert took < self.deadline + 0.25 + self._late[0], (took, self._late)


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
    limiter, slots, dlq = RateLimiter(conn), Slots(conn), DeadLetterStream(conn, "ns")
    assert (await limiter.acquire("k", 1, 60.0)).allowed  # scripts loaded, pool warm
    assert (await slots.acquire("s", "run-1", 1)).acquired
    clock = Clock(conn)

    own_redis.stop()
    clock.start()
    a = await limiter.acquire("k", 1, 60.0)
    await clock.check()
    assert a.degraded
    if conn.settings.rate_limit_policy == "open":
        assert a.allowed and a.retry_after == 0
    else:
        assert not a.allowed and a.retry_after == pytest.approx(1.0)
    g = await slots.acquire("s", "run-2", 1)
    assert g.degraded and g.acquired == (conn.settings.rate_limit_policy == "open")
    clock.start()
    with pytest.raises(RedisUnavailableError, match=rf"127\.0\.0\.1:{own_redis.port}.*ship"):
        await dlq.ship(RECORD)
    await clock.check()
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
    limiter, dlq = RateLimiter(conn), DeadLetterStream(conn, "ns")
    pid = own_redis.pid
    assert pid is not None
    try:
        assert (await limiter.acquire("h", 5, 1.0)).allowed
        os.kill(pid, signal.SIGSTOP)
        try:
            clock = Clock(conn)
            clock.start()
            a = await limiter.acquire("h", 5, 1.0)
            await clock.check()
            assert a.degraded and not a.allowed
            clock.start()
            with pytest.raises(RedisUnavailableError):
                await dlq.ship(RECORD)
            await clock.check()
        finally:
            os.kill(pid, signal.SIGCONT)
        a = await limiter.acquire("h", 5, 1.0)
        assert a.allowed and not a.degraded
    finally:
        await conn.aclose()
