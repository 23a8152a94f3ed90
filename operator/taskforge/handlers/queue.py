"""A keyed work queue, as in client-go: a key is never worked on by two workers at
once, repeated adds while queued collapse into one, and an add during work runs
the key once more afterwards. Delayed adds implement the engine's requeue_after.

One addition: a key whose work took long (a 1,000-step run replans in ~150 ms) rests
afterwards for as long as that work took (at most COALESCE_MAX_SECONDS); adds during
the rest run it once when the rest ends. Its Jobs and pods send thousands of events;
without the rest each reconcile picks up a handful of them, the run is replanned
hundreds of times, and it hogs the event loop other runs share. Quick keys (small
runs) never rest, so their step hand-off stays immediate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

COALESCE_AFTER_SECONDS = 0.05  # work shorter than this never makes its key rest
COALESCE_MAX_SECONDS = 0.5


class WorkQueue(Generic[K]):
    def __init__(
        self,
        rest_after: float = COALESCE_AFTER_SECONDS,
        rest_max: float = COALESCE_MAX_SECONDS,
    ) -> None:
        self.rest_after = rest_after
        self.rest_max = rest_max
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
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
            self._queued.add(key)
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

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self._rest_until.pop(key, None)
        self._enqueue(key)

    def __len__(self) -> int:
        return len(self._queued)

    async def worker(self, handle: Callable[[K], Awaitable[None]]) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
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
