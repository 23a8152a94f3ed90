"""Run statuses held back for the coalescing window (engine/coalesce.py says which may be).

A held status is what the operator decided but has not written yet. Until it is written,
every reconcile of the run plans from it, not from the stored status, as if the write had
happened: the same transitions are not recorded twice, Jobs are not launched twice, and the
write that ends the window carries everything since the stored status. It is only ever
laid over the very object it was planned from (same resourceVersion); anything else wrote
the run meanwhile, so it is dropped and the engine adopts the unrecorded Jobs instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from taskforge.api import WorkflowRunStatus
from taskforge.engine.actions import Action
from taskforge.engine.coalesce import holdable
from taskforge.handlers.store import Key

# Held statuses of runs that went away unseen are pruned when this many are held.
PRUNE_AT = 4096


@dataclass(frozen=True)
class Held:
    rv: str
    """resourceVersion of the stored run the status was planned over."""
    status: dict[str, Any]
    """The status in wire form, not yet written."""
    since: float
    """Monotonic time of the first held write; the window counts from it."""


@dataclass(frozen=True)
class Holding:
    left: float
    """Seconds until the held status must be written."""
    new: bool
    """False when it repeats what was held already."""


class HeldStatuses:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._held: dict[Key, Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, key: Key) -> bool:
        """Whether the run has a held status: it has started and pinned its spec, whatever
        the stored status says."""
        return key in self._held

    def overlay(self, key: Key, body: dict[str, Any]) -> dict[str, Any]:
        """The run as the operator last decided it: `body` with its held status, if any."""
        held = self._held.get(key)
        if held is None:
            return body
        if held.rv != _rv(body):
            del self._held[key]
            return body
        return {**body, "status": held.status}

    def held(self, key: Key) -> dict[str, Any] | None:
        held = self._held.get(key)
        return None if held is None else held.status

    def hold(self, key: Key, body: dict[str, Any], status: dict[str, Any],
             now: float) -> float | None:
        """Hold `status` (planned over the stored `body`): the seconds left until it must be
        written, or None when it must be written now (no window, or the window is over)."""
        if self.seconds <= 0:
            return None
        rv = _rv(body)
        held = self._held.get(key)
        since = held.since if held is not None and held.rv == rv else now
        left = since + self.seconds - now
        if left <= 0:
            self._held.pop(key, None)
            return None
        if len(self._held) >= PRUNE_AT:
            self._prune(now)
        self._held[key] = Held(rv, status, since)
        return left

    def hold_if_allowed(self, key: Key, body: dict[str, Any], actions: Iterable[Action],
                        planned_from: WorkflowRunStatus | None, status: WorkflowRunStatus, *,
                        new_status: dict[str, Any], now: float) -> Holding | None:
        """Hold the plan's status if it may wait (engine/coalesce.py) or repeats the held
        one; None when it must be written now."""
        if self.seconds <= 0:
            return None
        repeat = new_status == self.held(key)
        if not repeat and not holdable(actions, planned_from, status):
            return None
        left = self.hold(key, body, new_status, now)
        return None if left is None else Holding(left=left, new=not repeat)

    def drop(self, key: Key) -> None:
        self._held.pop(key, None)

    def _prune(self, now: float) -> None:
        """Forget statuses whose window ended long ago: their wake-up found the run gone."""
        stale = now - self.seconds - 60.0
        self._held = {k: h for k, h in self._held.items() if h.since > stale}


def _rv(body: dict[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion", ""))
