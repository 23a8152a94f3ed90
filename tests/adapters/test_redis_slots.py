"""Concurrency slots as leases against a real redis-server, and the pure helpers
that name keys and rank waiting runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from taskforge.adapters.redis_client import RedisConnection
from taskforge.adapters.slots import Slots
from taskforge.engine.limits import (
    Waiter,
    queue_rank,
    run_rate_key,
    run_slot_key,
    step_holder,
    step_rate_key,
    step_slot_key,
)

pytestmark = pytest.mark.anyio


async def test_admits_up_to_max(conn: RedisConnection) -> None:
    slots = Slots(conn)
    got = [await slots.acquire("wf", f"run-{i}", 3) for i in range(5)]
    assert [g.acquired for g in got] == [True, True, True, False, False]
    assert [g.active for g in got] == [1, 2, 3, 3, 3]
    assert 59.0 < got[3].retry_after <= 60.0  # the oldest lease, if nobody renews it
    assert set(await slots.holders("wf")) == {"run-0", "run-1", "run-2"}


async def test_reacquire_is_idempotent(conn: RedisConnection) -> None:
    slots = Slots(conn)
    assert (await slots.acquire("idem", "run-a", 1)).acquired
    again = await slots.acquire("idem", "run-a", 1)
    assert again.acquired and again.active == 1
    assert not (await slots.acquire("idem", "run-b", 1)).acquired


async def test_release_returns_the_slot(conn: RedisConnection) -> None:
    slots = Slots(conn)
    await slots.acquire("rel", "run-a", 1)
    assert not (await slots.acquire("rel", "run-b", 1)).acquired
    assert await slots.release("rel", "run-a")
    assert not await slots.release("rel", "run-a")
    assert (await slots.acquire("rel", "run-b", 1)).acquired


async def test_a_killed_holder_gives_its_slot_back_after_the_ttl(conn: RedisConnection) -> None:
    slots = Slots(conn)
    assert (await slots.acquire("ttl", "crashed", 1, ttl=1.0)).acquired
    waiting = await slots.acquire("ttl", "next", 1, ttl=1.0)
    assert not waiting.acquired and 0.9 < waiting.retry_after <= 1.0
    await asyncio.sleep(waiting.retry_after + 0.05)  # nobody renews "crashed"
    assert (await slots.acquire("ttl", "next", 1, ttl=1.0)).acquired
    assert list(await slots.holders("ttl")) == ["next"]


async def test_renewing_keeps_the_slot(conn: RedisConnection) -> None:
    slots = Slots(conn)
    await slots.acquire("renew", "alive", 1, ttl=1.0)
    for _ in range(5):
        await asyncio.sleep(0.3)
        assert await slots.renew("renew", "alive", ttl=1.0)
        assert not (await slots.acquire("renew", "other", 1, ttl=1.0)).acquired
    left = (await slots.holders("renew"))["alive"]
    assert 0.9 < left <= 1.0


async def test_renewing_a_lapsed_lease_recreates_it(conn: RedisConnection) -> None:
    """The work is still running, so it is counted again, even above max."""
    slots = Slots(conn)
    await slots.acquire("lapsed", "slow", 1, ttl=0.2)
    await asyncio.sleep(0.3)
    assert (await slots.acquire("lapsed", "new", 1, ttl=5)).acquired
    assert not await slots.renew("lapsed", "slow", ttl=5)
    assert set(await slots.holders("lapsed")) == {"slow", "new"}
    assert not (await slots.acquire("lapsed", "third", 2)).acquired


async def test_the_key_expires_with_its_last_lease(conn: RedisConnection) -> None:
    slots = Slots(conn)
    await slots.acquire("gone", "a", 2, ttl=0.3)
    await slots.acquire("gone", "b", 2, ttl=0.6)
    assert 300 < await conn.client.pttl(slots.key("gone")) <= 600
    await asyncio.sleep(0.7)
    assert not await conn.client.exists(slots.key("gone"))


async def test_runs_start_in_creation_order(conn: RedisConnection) -> None:
    """maxRuns 2: a and b run; c (older) and d (younger) wait. Freed slots go to c
    first even when d asks first."""
    slots = Slots(conn)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    c = Waiter(t0 + timedelta(seconds=1), "wf-c")
    d = Waiter(t0 + timedelta(seconds=2), "wf-d")
    for run in ("wf-a", "wf-b"):
        assert (await slots.acquire("order", run, 2)).acquired
    assert not (await slots.acquire("order", "wf-d", 2, rank=queue_rank(d, [c, d]))).acquired
    await slots.release("order", "wf-a")
    assert not (await slots.acquire("order", "wf-d", 2, rank=queue_rank(d, [c, d]))).acquired
    assert (await slots.acquire("order", "wf-c", 2, rank=queue_rank(c, [c, d]))).acquired
    assert not (await slots.acquire("order", "wf-d", 2, rank=queue_rank(d, [d]))).acquired
    await slots.release("order", "wf-b")
    assert (await slots.acquire("order", "wf-d", 2, rank=queue_rank(d, [d]))).acquired


async def test_max_holds_whatever_rank_says(conn: RedisConnection) -> None:
    slots = Slots(conn)
    grants = await asyncio.gather(*(slots.acquire("race", f"r{i}", 3, rank=0) for i in range(20)))
    assert sum(g.acquired for g in grants) == 3


def test_queue_rank_orders_by_creation_then_name() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    waiting = [Waiter(t0, "b"), Waiter(t0, "a"), Waiter(t0 + timedelta(seconds=1), "0")]
    assert [queue_rank(w, waiting) for w in waiting] == [1, 0, 2]
    assert queue_rank(Waiter(t0, "a"), []) == 0


def test_key_names() -> None:
    assert run_rate_key("ns", "wf") == "run:ns/wf"
    assert step_rate_key("ns", "github-api") == "step:ns/github-api"
    assert run_slot_key("ns", "wf") == "run:ns/wf"
    assert step_slot_key("ns", "db") == "step:ns/db"
    assert step_holder("uid-1", "fetch") == "uid-1/fetch"
