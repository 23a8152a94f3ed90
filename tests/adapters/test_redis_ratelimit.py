"""The GCRA limiter against a real redis-server: burst, exact retry_after, accuracy
over 30 s of real time, fairness on a shared key, key expiry."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from taskforge.adapters.ratelimit import RateLimiter
from taskforge.adapters.redis_client import RedisConnection

pytestmark = pytest.mark.anyio


async def test_burst_then_exact_retry_after(conn: RedisConnection) -> None:
    """A burst of 5, then a denial that names the exact time of the next token. Bounds
    come from clock readings around the calls (issue 20), so a slow machine widens them by
    its own delays; "a moment before it is still denied" is only asserted when the clock
    shows the call really came before that time."""
    limiter = RateLimiter(conn)
    eps = 0.002
    start = time.monotonic()
    got = [await limiter.acquire("burst", 5, 1.0) for _ in range(5)]
    assert all(a.allowed and a.retry_after == 0 for a in got)
    assert [a.remaining for a in got] == [4, 3, 2, 1, 0]
    denied = await limiter.acquire("burst", 5, 1.0)
    told = time.monotonic()
    assert not denied.allowed and not denied.degraded
    # One token every 200 ms, counted from the first call; the time the calls took is gone.
    assert 0.2 - (told - start) - eps <= denied.retry_after <= 0.2
    await asyncio.sleep(max(0.0, denied.retry_after - 0.1))
    early = await limiter.acquire("burst", 5, 1.0)
    if time.monotonic() - told < denied.retry_after - eps:  # surely before the token
        assert not early.allowed and 0 < early.retry_after <= 0.1 + eps
    if not early.allowed:
        await asyncio.sleep(early.retry_after)
        assert (await limiter.acquire("burst", 5, 1.0)).allowed
    again = await limiter.acquire("burst", 5, 1.0)
    if not again.allowed:  # (a late wake-up may have left a second token to take)
        assert 0 < again.retry_after <= 0.2 + eps  # never more than one interval away


async def test_burst_one_spaces_every_start(conn: RedisConnection) -> None:
    limiter = RateLimiter(conn)
    start = time.monotonic()
    assert (await limiter.acquire("strict", 30, 60.0, burst=1)).allowed
    denied = await limiter.acquire("strict", 30, 60.0, burst=1)
    # The wait is 2 s less the time between the two calls (Redis's clock), at most what this
    # side measured around them: exact on an idle machine, still right on a loaded one.
    waited = time.monotonic() - start
    assert not denied.allowed and 2.0 - waited - 0.001 < denied.retry_after <= 2.0


async def test_cost_takes_several_tokens(conn: RedisConnection) -> None:
    limiter = RateLimiter(conn)
    start = time.monotonic()
    assert (await limiter.acquire("cost", 10, 1.0, cost=8)).allowed
    denied = await limiter.acquire("cost", 10, 1.0, cost=4)
    waited = time.monotonic() - start
    # 2 left, 2 more needed: 200 ms, less the time between the calls.
    assert not denied.allowed and 0.2 - waited - 0.001 < denied.retry_after <= 0.2
    with pytest.raises(ValueError):
        await limiter.acquire("cost", 10, 1.0, cost=11)
    with pytest.raises(ValueError):
        await limiter.acquire("cost", 0, 1.0)


async def test_key_expires_when_the_bucket_is_full_again(conn: RedisConnection) -> None:
    limiter = RateLimiter(conn)
    await limiter.acquire("exp", 10, 1.0)
    ttl = await conn.client.pttl(limiter.key("exp"))
    assert 0 < ttl <= 100  # one token back in 100 ms means full again
    assert limiter.key("exp") == conn.settings.prefix + "rl:exp"
    await asyncio.sleep(0.15)
    assert not await conn.client.exists(limiter.key("exp"))


async def test_denials_do_not_consume(conn: RedisConnection) -> None:
    limiter = RateLimiter(conn)
    await limiter.acquire("deny", 1, 0.5)
    for _ in range(50):
        assert not (await limiter.acquire("deny", 1, 0.5)).allowed
    await asyncio.sleep(0.5)
    assert (await limiter.acquire("deny", 1, 0.5)).allowed


@pytest.mark.timeout(120)
async def test_accuracy_10_per_second_over_30_seconds(conn: RedisConnection) -> None:
    """The issue's acceptance test: over 30 s of real time, the limiter admits what 10 per
    second promises, no more and no fewer, however late the caller's wake-ups are.

    Nothing here assumes an idle scheduler (issue 20): tokens are counted against the
    measured time between the key's first acquire and the last call, each bracketed by
    clock readings before and after it, so a slow call widens the window by exactly its
    own delay. A late wake-up finds tokens piled up and takes them all (GCRA keeps up to a
    burst of them); a denial as the first call after sleeping until retry_after would mean
    retry_after was early, which is counted and must never happen. A fresh key holds a
    full burst (10), so by time T there are 10 + 10 * (T - first) tokens, rounded down."""
    limiter = RateLimiter(conn)
    first_lo = time.monotonic()
    assert (await limiter.acquire("acc", 10, 1.0)).allowed
    first_hi = time.monotonic()
    admitted = 1
    while (pending := await limiter.acquire("acc", 10, 1.0)).allowed:
        admitted += 1
    assert admitted == 10
    end = first_lo + 30.0
    woke_too_early = wake_ups = 0
    while time.monotonic() < end:
        await asyncio.sleep(min(pending.retry_after, max(0.0, end - time.monotonic())))
        wake_ups += 1
        took = 0
        while (a := await limiter.acquire("acc", 10, 1.0)).allowed:
            took += 1
        if took == 0 and pending.retry_after <= end - time.monotonic():
            woke_too_early += 1
        admitted += took
        pending = a
    last_lo = time.monotonic()
    while (await limiter.acquire("acc", 10, 1.0)).allowed:
        admitted += 1
    last_hi = time.monotonic()
    low = 10 + int(10 * (last_lo - first_hi)) - 1
    high = 10 + int(10 * (last_hi - first_lo)) + 1
    print(f"admitted {admitted} in {last_hi - first_lo:.2f} s (bounds {low}..{high}), "
          f"{wake_ups} wake-ups, {woke_too_early} early")
    assert low <= admitted <= high
    assert last_lo - first_lo >= 30.0 and admitted >= 300  # 30 s really went by
    assert woke_too_early == 0


async def test_fair_share_between_two_workflows_on_one_key(conn: RedisConnection) -> None:
    """Two workflows' steps contend for ``github-api`` (20/s) for 3 s, each retrying at
    its retry_after. Queued by first denial, they alternate instead of racing."""
    limiter = RateLimiter(conn)
    counts = {"a": 0, "b": 0}
    calls: list[float] = []  # when each acquire returned, either workflow's
    end = time.monotonic() + 3.0

    late = 0.0  # how much later than their turn the waiters came back, in all

    async def workflow(name: str) -> None:
        nonlocal late
        due: float | None = None
        while time.monotonic() < end:
            a = await limiter.acquire("github-api", 20, 1.0, waiter=f"run-{name}/call")
            calls.append(now := time.monotonic())
            if due is not None:
                late += max(0.0, now - due)
                due = None
            if a.allowed:
                counts[name] += 1
            else:
                due = now + a.retry_after
                await asyncio.sleep(a.retry_after)

    await asyncio.gather(workflow("a"), workflow("b"))
    total = counts["a"] + counts["b"]
    # Tokens nobody asked for are not the limiter's loss: those that refilled after the last
    # call (a late wake-up near the end) and beyond the bucket's 1 s during a gap in calls (a
    # starved event loop). Nor is a waiter's late return: it was told the exact time of its
    # turn, and the line counts on from its admission (GCRA), so its lateness is a token not
    # taken. Measured, not assumed: under two CPU burners the callers woke late and took 77,
    # and once 76 with no gap over 1 s (issue 20's load runs).
    calls.sort()
    idle = max(0.0, end - calls[-1]) + sum(
        max(0.0, later - earlier - 1.0) for earlier, later in itertools.pairwise(calls))
    print(f"shares {counts}; idle {idle:.3f} s; waiters late {late:.3f} s in all")
    # burst plus 3 s of refill: nothing invented, nothing lost while asked for
    assert 20 + 58 - int(20 * (idle + late)) <= total <= 20 + 61
    assert min(counts.values()) >= 0.45 * total


async def test_waiters_are_served_in_order_with_staggered_times(conn: RedisConnection) -> None:
    """Each queued waiter is told its own time, one interval (100 ms) after the one ahead,
    and is admitted in turn. Bounds come from clock readings around each call (issue 20):
    a call that was slow to run shortens the wait it is told by its own delay, never more."""
    limiter = RateLimiter(conn)
    interval = 0.1
    before = time.monotonic()
    assert (await limiter.acquire("q", 10, 1.0, burst=1, waiter="w0")).allowed
    told, marks = [], [before]
    for i in (1, 2, 3):
        told.append(await limiter.acquire("q", 10, 1.0, burst=1, waiter=f"w{i}"))
        marks.append(time.monotonic())
    assert [a.ahead for a in told] == [0, 1, 2]
    waits = [a.retry_after for a in told]
    eps = 0.002  # Redis time is in µs and retry_after is rounded
    # w1 waits what is left of w0's interval: 100 ms less the time between the two calls.
    assert interval - (marks[1] - marks[0]) - eps <= waits[0] <= interval + eps
    # Each next one is told one interval later, less the time between its call and the last.
    # (Call k ran between marks[k - 1] and marks[k].)
    for k in (1, 2):
        gap = marks[k + 1] - marks[k - 1]
        assert interval - gap - eps <= waits[k] - waits[k - 1] <= interval + eps
    # A newcomer without a name waits behind all of them: one interval after w3.
    stranger = await limiter.acquire("q", 10, 1.0, burst=1)
    assert stranger.ahead == 3
    assert stranger.retry_after >= waits[2] + interval - (time.monotonic() - marks[2]) - eps
    # The third in line cannot jump ahead at the first one's time...
    await asyncio.sleep(waits[0])
    jumper = await limiter.acquire("q", 10, 1.0, burst=1, waiter="w3")
    assert not jumper.allowed and jumper.ahead == 2
    # ...the first one gets in, then each in turn. A late admission moves the next one's
    # time back by its lateness (GCRA counts from the admission), so the next waiter is
    # not sent at a precomputed time: it asks, and a denial must name it next in line and
    # tell a wait of at most one interval, after which it gets in.
    assert (await limiter.acquire("q", 10, 1.0, burst=1, waiter="w1")).allowed
    for waiter, behind in (("w2", "w3"), ("w3", None)):
        if behind is not None:
            jumper = await limiter.acquire("q", 10, 1.0, burst=1, waiter=behind)
            assert not jumper.allowed and jumper.ahead == 1
        a = await limiter.acquire("q", 10, 1.0, burst=1, waiter=waiter)
        if not a.allowed:
            assert a.ahead == 0 and a.retry_after <= interval + eps
            await asyncio.sleep(a.retry_after)
            a = await limiter.acquire("q", 10, 1.0, burst=1, waiter=waiter)
        assert a.allowed, waiter
    assert await conn.client.zcard(limiter.key("q") + ":q") == 0


async def test_higher_priority_goes_first_equal_priorities_keep_their_order(
    conn: RedisConnection,
) -> None:
    """spec.priority in the queue: an urgent waiter that comes last is first in line and is
    admitted first; equal priorities keep the order of first denial; a waiter whose priority
    is raised is re-banded; and the limit itself never moves (one token per 100 ms)."""
    limiter = RateLimiter(conn)
    assert (await limiter.acquire("p", 10, 1.0, burst=1, waiter="w0")).allowed
    low = [await limiter.acquire("p", 10, 1.0, burst=1, waiter=f"low{i}") for i in (1, 2)]
    assert [a.ahead for a in low] == [0, 1]
    urgent = await limiter.acquire("p", 10, 1.0, burst=1, waiter="urgent", priority=10)
    assert not urgent.allowed and urgent.ahead == 0
    # The urgent one's place pushed both low ones back.
    assert (await limiter.acquire("p", 10, 1.0, burst=1, waiter="low1")).ahead == 1
    assert (await limiter.acquire("p", 10, 1.0, burst=1, waiter="low2")).ahead == 2
    mid = await limiter.acquire("p", 10, 1.0, burst=1, waiter="mid", priority=5)
    assert mid.ahead == 1  # behind urgent, ahead of the low ones
    # low2 raised to 10: it keeps its arrival, so it goes before urgent (same priority,
    # denied earlier), and mid is now third.
    assert (await limiter.acquire("p", 10, 1.0, burst=1, waiter="low2", priority=10)).ahead == 0
    assert (await limiter.acquire("p", 10, 1.0, burst=1, waiter="mid", priority=5)).ahead == 2
    order: list[str] = []
    pending = {"urgent": 10, "low2": 10, "mid": 5, "low1": 0}
    deadline = time.monotonic() + 5
    while pending and time.monotonic() < deadline:
        for name, prio in list(pending.items()):
            if (await limiter.acquire("p", 10, 1.0, burst=1, waiter=name, priority=prio)).allowed:
                order.append(name)
                del pending[name]
        await asyncio.sleep(0.01)
    assert order == ["low2", "urgent", "mid", "low1"]


async def test_a_waiter_that_never_returns_loses_its_place(conn: RedisConnection) -> None:
    limiter = RateLimiter(conn, grace=0.2)
    await limiter.acquire("lapse", 10, 1.0, burst=1)
    ghost = await limiter.acquire("lapse", 10, 1.0, burst=1, waiter="ghost")
    me = await limiter.acquire("lapse", 10, 1.0, burst=1, waiter="me")
    assert me.ahead == 1
    await asyncio.sleep(ghost.retry_after + 0.25)  # the ghost's place has lapsed
    now = await limiter.acquire("lapse", 10, 1.0, burst=1, waiter="me")
    assert now.allowed and now.ahead == 0


async def test_leave_frees_the_place_at_once(conn: RedisConnection) -> None:
    limiter = RateLimiter(conn)
    await limiter.acquire("leave", 10, 1.0, burst=1)
    await limiter.acquire("leave", 10, 1.0, burst=1, waiter="cancelled-run")
    assert (await limiter.acquire("leave", 10, 1.0, burst=1, waiter="me")).ahead == 1
    await limiter.leave("leave", "cancelled-run")
    assert (await limiter.acquire("leave", 10, 1.0, burst=1, waiter="me")).ahead == 0


async def test_the_queue_never_admits_more_than_the_limit(conn: RedisConnection) -> None:
    """Twelve eager callers, some named, some not, for 2 s at 10/s with burst 3.

    Bounds from measured time (issue 20): never more than the burst plus 10/s over the
    window from the first call to the end of the last one; and no fewer than that less what
    the named waiters lost by coming back late. Each is told the exact time of its turn
    (retry_after counts the waiters ahead of it), and nobody else may take its token
    meanwhile, so every late return can cost the line a token, not only the head's (under
    two CPU burners 17 were admitted where counting the head alone allowed no fewer than 19,
    with the head 4 ms late). An idle machine keeps the lateness near zero."""
    limiter = RateLimiter(conn)
    admitted: list[float] = []
    late = 0.0
    last_done = start = time.monotonic()
    end = start + 2.0

    async def caller(i: int) -> None:
        nonlocal late, last_done
        named = bool(i % 3)
        due: float | None = None
        while time.monotonic() < end:
            a = await limiter.acquire("many", 10, 1.0, burst=3, waiter=f"w{i}" if named else None)
            now = last_done = max(last_done, time.monotonic())
            if due is not None:
                late += max(0.0, time.monotonic() - due)
                due = None
            if a.allowed:
                admitted.append(now)
                continue
            wait = a.retry_after if named else min(a.retry_after, 0.05)
            if named:
                due = time.monotonic() + a.retry_after
            await asyncio.sleep(wait)

    await asyncio.gather(*(caller(i) for i in range(12)))
    window = last_done - start
    print(f"{len(admitted)} admitted in {window:.2f} s; waiters late {late:.3f} s in all")
    assert len(admitted) <= 3 + int(10 * window) + 1
    assert len(admitted) >= 3 + int(10 * min(window, 2.0)) - 3 - int(10 * late) - 1


async def test_redis_time_not_local_time(conn: RedisConnection) -> None:
    """Two connections (think: two operator replicas) see one schedule."""
    other = RedisConnection(conn.settings)
    try:
        a, b = RateLimiter(conn), RateLimiter(other)
        assert (await a.acquire("shared", 1, 1.0)).allowed
        denied = await b.acquire("shared", 1, 1.0)
        assert not denied.allowed and 0.9 < denied.retry_after <= 1.0
    finally:
        await other.aclose()
