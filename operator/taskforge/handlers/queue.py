"""A keyed work queue, as in client-go: a key is never worked on by two workers at
once, repeated adds while queued collapse into one, and an add during work runs
the key once more afterwards. Delayed adds implement the engine's requeue_after.

One addition: a key whose work took long (a 1,000-step run replans in ~150 ms) rests
afterwards for as long as that work took (at most COALESCE_MAX_SECONDS); adds during
the rest run it once when the rest ends. Its Jobs and pods send thousands of events;
without the rest each reconcile picks up a handful of them, the run is replanned
hundreds of times, and it hogs the event loop other runs share. Quick keys (small
runs) never rest, so their step hand-off stays immediate.

Failures are retried as client-go's `ItemExponentialFailureRateLimiter` does: per key, the
delay doubles from BACKOFF_BASE_SECONDS up to BACKOFF_MAX_SECONDS, and a success resets it.
A key that fails for good (an API server that refuses a write, a bug) then costs one attempt
every five minutes instead of one every two seconds forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

COALESCE_AFTER_SECONDS = 0.05  # work shorter than this never makes its key rest
COALESCE_MAX_SECONDS = 0.5
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 300.0


class ItemBackoff(Generic[K]):
    """Exponential backoff per key, capped; a pure counter (the queue owns the clock)."""

    def __init__(
        self, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_MAX_SECONDS
    ) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        """Count one more failure of `key`; the delay before its retry."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        if n >= 64:  # 2**64 * base is past any cap; avoid float overflow
            return self.cap
        return float(min(self.cap, self.base * 2**n))

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)


def report_due(failures: int) -> bool:
    """Whether the `failures`-th failure in a row should be reported (an Event, a traceback):
    the 1st, 2nd, 4th, 8th, ... So a key failing for good says so at once, then at a rate
    that falls with its backoff (about hourly after a few hours) rather than at every retry."""
    return failures >= 1 and failures & (failures - 1) == 0


class WorkQueue(Generic[K]):
    def __init__(
        self,
        rest_after: float = COALESCE_AFTER_SECONDS,
        rest_max: float = COALESCE_MAX_SECONDS,
        backoff: ItemBackoff[K] | None = None,
    ) -> None:
        self.rest_after = rest_after
        self.rest_max = rest_max
        self.backoff: ItemBackoff[K] = backoff if backoff is not None else ItemBackoff()
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: dict[K, float] = {}  # key -> when queued (monotonic), oldest first
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._rest_until: dict[K, float] = {}

    def add(self, key: K) -> None:
        until = self._rest_until.get(key)
        if until is not None:
            wait = until - asyncio.get_running_loop().time()
            if wait > 0:
                self.add_after(key, wait)
                return
            del self._rest_until[key]
        self._enqueue(key)

    def _enqueue(self, key: K) -> None:
        if key in self._active:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued[key] = time.monotonic()
            self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Add later; an earlier timer for the key wins, a later one is replaced."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay)
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled():
            if timer.when() <= when:
                return
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def add_rate_limited(self, key: K) -> float:
        """Retry a failed key after its backoff; returns that delay."""
        delay = self.backoff.when(key)
        self.add_after(key, delay)
        return delay

    def failures(self, key: K) -> int:
        """Failures of `key` in a row (0 after a success)."""
        return self.backoff.failures(key)

    def forget(self, key: K) -> None:
        """The key's work succeeded: its next failure starts the backoff over."""
        self.backoff.forget(key)

    def cancel_after(self, key: K) -> None:
        """Drop the key's timer: whatever it was set for is settled (a finished run)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self._rest_until.pop(key, None)
        self._enqueue(key)

    def __len__(self) -> int:
        return len(self._queued)

    def oldest_wait(self) -> float:
        """Seconds the longest-waiting key has waited for a worker (0 when none waits): a
        stuck queue shows as this growing while the depth stays up (read at each scrape)."""
        for queued in self._queued.values():  # insertion order: the first is the oldest
            return max(0.0, time.monotonic() - queued)
        return 0.0

    async def worker(self, handle: Callable[[K], Awaitable[None]]) -> None:
        while True:
            key = await self._queue.get()
            self._queued.pop(key, None)
            self._active.add(key)
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                await handle(key)
            finally:
                self._active.discard(key)
                ended = loop.time()
                took = ended - started
                if took >= self.rest_after:
                    if len(self._rest_until) > 10_000:  # keys of finished runs
                        self._rest_until = {
                            k: t for k, t in self._rest_until.items() if t > ended
                        }
                    self._rest_until[key] = ended + min(took, self.rest_max)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
