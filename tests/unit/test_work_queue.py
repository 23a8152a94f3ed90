"""The operator's keyed work queue: client-go's guarantees, plus rest after long work.

These properties are what make one reconcile per run at a time safe and what keep a
1,000-step run from being replanned for every one of its Jobs' events.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest
from taskforge.handlers.queue import ItemBackoff, WorkQueue, report_due


def run_with_workers(
    queue: WorkQueue[str],
    handle: Callable[[str], Awaitable[None]],
    scenario: Callable[[], Awaitable[None]],
    workers: int = 4,
) -> None:
    async def main() -> None:
        tasks = [asyncio.create_task(queue.worker(handle)) for _ in range(workers)]
        try:
            await scenario()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def test_repeated_adds_while_queued_collapse_into_one() -> None:
    queue: WorkQueue[str] = WorkQueue()
    seen: list[str] = []

    async def handle(key: str) -> None:
        seen.append(key)

    async def scenario() -> None:
        for _ in range(5):
            queue.add("a")
        queue.add("b")
        await asyncio.sleep(0.05)

    run_with_workers(queue, handle, scenario)
    assert sorted(seen) == ["a", "b"]


def test_a_key_is_never_worked_on_twice_at_once_and_an_add_during_work_runs_it_again() -> None:
    queue: WorkQueue[str] = WorkQueue(rest_after=10.0)  # no rest in this test
    active: set[str] = set()
    overlaps: list[str] = []
    runs: list[float] = []

    async def handle(key: str) -> None:
        if key in active:
            overlaps.append(key)
        active.add(key)
        runs.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.03)
        active.discard(key)

    async def scenario() -> None:
        queue.add("a")
        await asyncio.sleep(0.01)
        for _ in range(3):  # during the work: one more run afterwards, not three
            queue.add("a")
        await asyncio.sleep(0.15)

    run_with_workers(queue, handle, scenario)
    assert overlaps == []
    assert len(runs) == 2
    assert runs[1] - runs[0] >= 0.03


def test_an_earlier_delayed_add_wins_over_a_later_one() -> None:
    queue: WorkQueue[str] = WorkQueue()
    at: list[float] = []

    async def handle(key: str) -> None:
        at.append(asyncio.get_running_loop().time())

    async def scenario() -> None:
        start = asyncio.get_running_loop().time()
        queue.add_after("a", 0.6)
        queue.add_after("a", 0.05)
        queue.add_after("a", 0.9)
        await asyncio.sleep(1.0)
        assert len(at) == 1
        assert 0.04 <= at[0] - start < 0.5  # the 0.05 s add, not the later ones

    run_with_workers(queue, handle, scenario)


@pytest.mark.parametrize(
    ("work_seconds", "expect_rest"),
    [
        (0.0, False),  # a small run: re-run at once, hand-off stays immediate
        (0.15, True),  # long work: the key rests as long as the work took
    ],
)
def test_a_key_rests_after_long_work_and_adds_meanwhile_run_it_once(
    work_seconds: float, expect_rest: bool
) -> None:
    queue: WorkQueue[str] = WorkQueue(rest_after=0.1, rest_max=0.5)
    starts: list[float] = []
    ends: list[float] = []
    first_done = asyncio.Event()

    async def handle(key: str) -> None:
        loop = asyncio.get_running_loop()
        starts.append(loop.time())
        if len(starts) == 1:
            await asyncio.sleep(work_seconds)
        ends.append(loop.time())
        first_done.set()

    async def scenario() -> None:
        queue.add("a")
        await first_done.wait()
        for _ in range(10):  # a burst of events right after the work
            queue.add("a")
            await asyncio.sleep(0)
        await asyncio.sleep(0.3)

    run_with_workers(queue, handle, scenario)
    gap = starts[1] - ends[0]
    if expect_rest:
        assert len(starts) == 2, starts  # the whole burst in one run
        assert gap >= work_seconds * 0.9, gap
    else:
        assert len(starts) > 2  # each add ran at once
        assert gap < 0.1, gap  # (scheduling only; a rest would be >= 0.15)


def test_the_rest_is_capped() -> None:
    queue: WorkQueue[str] = WorkQueue(rest_after=0.01, rest_max=0.05)
    starts: list[float] = []

    async def handle(key: str) -> None:
        starts.append(asyncio.get_running_loop().time())
        if len(starts) == 1:
            await asyncio.sleep(0.3)

    async def scenario() -> None:
        queue.add("a")
        await asyncio.sleep(0.32)
        queue.add("a")
        await asyncio.sleep(0.2)

    run_with_workers(queue, handle, scenario)
    assert len(starts) == 2
    # capped: the rest ends 0.05 s after the work (0.35 s); uncapped it would end at 0.6 s
    assert starts[1] - starts[0] < 0.5


# -- backoff of failing keys (client-go's ItemExponentialFailureRateLimiter) ----------------


def test_backoff_doubles_per_key_up_to_the_cap_and_a_success_resets_it() -> None:
    backoff: ItemBackoff[str] = ItemBackoff(base=0.5, cap=300.0)
    delays = [backoff.when("a") for _ in range(12)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert backoff.when("b") == 0.5  # per key
    assert backoff.failures("a") == 12
    backoff.forget("a")
    assert backoff.failures("a") == 0
    assert backoff.when("a") == 0.5
    for _ in range(2000):  # no overflow however long a key fails
        assert backoff.when("c") <= 300.0


def test_failures_are_reported_at_a_falling_rate() -> None:
    reported = [n for n in range(1, 1100) if report_due(n)]
    assert reported == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert not report_due(0)


def test_a_failing_key_is_retried_with_growing_delays_not_in_a_tight_loop() -> None:
    """The old error path retried every 2 s forever. Here a key that always fails, with a
    50 ms base, is tried about log2(window / base) times: generous bounds, no exact timing."""
    queue: WorkQueue[str] = WorkQueue(backoff=ItemBackoff(base=0.05, cap=10.0))
    tries: list[float] = []

    async def handle(key: str) -> None:
        tries.append(asyncio.get_running_loop().time())
        queue.add_rate_limited(key)  # what the reconcilers do on an error

    async def scenario() -> None:
        queue.add("a")
        await asyncio.sleep(1.0)

    run_with_workers(queue, handle, scenario)
    # 0, 0.05, 0.15, 0.35, 0.75 (then 1.55): 5 tries; a fixed 50 ms retry would make ~20.
    assert 3 <= len(tries) <= 6, tries
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert gaps[0] >= 0.05, gaps
    assert gaps[-1] >= 0.1, gaps  # the wait grew: the 3rd is 0.2 s
    assert queue.failures("a") == len(tries)


def test_a_success_resets_the_backoff_in_the_queue() -> None:
    queue: WorkQueue[str] = WorkQueue(backoff=ItemBackoff(base=0.5, cap=10.0))

    async def scenario() -> None:
        assert queue.add_rate_limited("a") == 0.5
        assert queue.add_rate_limited("a") == 1.0
        queue.forget("a")
        assert queue.failures("a") == 0
        assert queue.add_rate_limited("a") == 0.5

    asyncio.run(scenario())
