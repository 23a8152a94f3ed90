"""Concurrency slots as leases against a real redis-server, and the pure helpers
that name keys and rank waiting runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from taskforge.adapters.redis_client import RedisConnection, RedisSettings
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
from taskforge.handlers.limits import Limits

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


# --- step keys: a queue of places in Redis, by priority then first refusal (issue 19) ------


async def test_step_waiters_by_priority_then_first_refusal(conn: RedisConnection) -> None:
    """Key held; three waiters: low-a, low-b (priority 0), then urgent (10). Each release
    names the next in line, and only that one may take the slot."""
    slots = Slots(conn)
    assert (await slots.acquire_queued("k", "holder/s", 1)).acquired
    refused = [await slots.acquire_queued("k", h, 1, priority=p)
               for h, p in (("low-a/s", 0), ("low-b/s", 0), ("urgent/s", 10))]
    assert [g.acquired for g in refused] == [False, False, False]
    assert [g.ahead for g in refused] == [0, 1, 0]  # urgent counts only its own band
    assert await slots.waiters("k") == ["urgent/s", "low-a/s", "low-b/s"]
    order = []
    current = "holder/s"
    for _ in range(3):
        held, nxt = await slots.release_next("k", current, 1)
        assert held
        # every waiter asks; only the first in line gets the slot
        grants = {h: await slots.acquire_queued("k", h, 1, priority=10 if h == "urgent/s"
                                                else 0)
                  for h in await slots.waiters("k")}
        winners = [h for h, g in grants.items() if g.acquired]
        assert winners == nxt
        order.append(winners[0])
        current = winners[0]
    assert order == ["urgent/s", "low-a/s", "low-b/s"]
    assert await slots.waiters("k") == []


async def test_a_newcomer_does_not_jump_live_waiters(conn: RedisConnection) -> None:
    slots = Slots(conn)
    assert (await slots.acquire_queued("nj", "h/s", 1)).acquired
    assert not (await slots.acquire_queued("nj", "w/s", 1)).acquired
    await slots.release_next("nj", "h/s", 1)
    late = await slots.acquire_queued("nj", "late/s", 1)  # same priority, arrived later
    assert not late.acquired and late.ahead == 1
    assert (await slots.acquire_queued("nj", "w/s", 1)).acquired
    # a higher priority newcomer is still behind nobody of its band, but the slot is taken
    assert not (await slots.acquire_queued("nj", "vip/s", 1, priority=5)).acquired
    assert await slots.waiters("nj") == ["vip/s", "late/s"]


async def test_a_released_waiter_leaves_the_line(conn: RedisConnection) -> None:
    """A cancelled or deleted run's waiting step is released: its place goes at once."""
    slots = Slots(conn)
    assert (await slots.acquire_queued("gone", "h/s", 1)).acquired
    assert not (await slots.acquire_queued("gone", "cancelled/s", 1, priority=9)).acquired
    assert not (await slots.acquire_queued("gone", "w/s", 1)).acquired
    held, nxt = await slots.release_next("gone", "cancelled/s", 1)
    assert not held and nxt == ["w/s"]
    await slots.release_next("gone", "h/s", 1)
    assert (await slots.acquire_queued("gone", "w/s", 1)).acquired


async def test_an_abandoned_place_lapses_and_kept_places_stay(conn: RedisConnection) -> None:
    """A place nobody keeps (operator crashed, deletion missed) blocks nobody after its
    TTL; a kept one stays in line."""
    slots = Slots(conn)
    assert (await slots.acquire_queued("lapse", "h/s", 1)).acquired
    assert not (await slots.acquire_queued("lapse", "ghost/s", 1, priority=9,
                                           place_ttl=0.3)).acquired
    assert not (await slots.acquire_queued("lapse", "kept/s", 1, place_ttl=0.3)).acquired
    await slots.release_next("lapse", "h/s", 1)
    for _ in range(3):
        await asyncio.sleep(0.15)
        assert await slots.keep_places("lapse", ["kept/s", "never-waited/s"], 0.3) == 1
    assert await slots.waiters("lapse") == ["kept/s"]
    assert (await slots.acquire_queued("lapse", "kept/s", 1)).acquired
    assert await slots.keep_places("lapse", ["kept/s"]) == 0  # started: no place re-made


async def test_queued_max_holds_and_reacquire_is_idempotent(conn: RedisConnection) -> None:
    slots = Slots(conn)
    got = [await slots.acquire_queued("mx", f"r{i}/s", 2) for i in range(4)]
    assert [g.acquired for g in got] == [True, True, False, False]
    again = await slots.acquire_queued("mx", "r0/s", 2)
    assert again.acquired and again.active == 2
    held, nxt = await slots.release_next("mx", "r0/s", 2)
    assert held and nxt == ["r2/s", "r3/s"]
    assert (await slots.acquire_queued("mx", "r3/s", 2)).acquired is False  # r2 first
    assert (await slots.acquire_queued("mx", "r2/s", 2)).acquired


async def test_releasing_a_step_wakes_the_runs_of_the_first_waiters(
    settings: RedisSettings,
) -> None:
    limits = Limits(settings)
    woken: list[str] = []
    limits.wake = woken.extend
    assert limits.slots is not None
    key = step_slot_key("ns", "db")
    try:
        assert (await limits.slots.acquire_queued(key, "u0/s", 1)).acquired
        for holder, priority in (("u1/s", 0), ("u2/s", 3)):
            assert not (await limits.slots.acquire_queued(key, holder, 1,
                                                          priority=priority)).acquired
        await limits.release_step("ns", "db", "u0/s", 1)
        assert woken == ["u2"]
        assert limits.take_offers("u2") == {"s"}  # its plan launches the step at once
        assert limits.take_offers("u2") == frozenset() and limits.take_offers("u1") == set()
    finally:
        await limits.close()
