"""Pure helpers for rate limits and concurrency slots: key names, holder ids, and a
waiting run's place in its workflow's queue.

They live in the engine (no Redis here) so the planner, the operator and the tests
all name keys the same way, and so the queue order is decided from facts
(creation time, name) the caller passes in.

Named step keys are scoped by namespace: two tenants that both pick the key
``github-api`` do not throttle each other. Sharing is across workflows of one
namespace, which is what a Secret-held API token usually spans.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from taskforge.api.timing import PRIORITY_MAX, PRIORITY_MIN
from taskforge.api.workflow import WorkflowSpec


def wants_limits(spec: WorkflowSpec) -> bool:
    """Whether a workflow asks for any rate or concurrency limit (run- or step-level)."""
    return bool(spec.rate_limit or spec.concurrency or any(
        s.rate_limit or s.concurrency for s in spec.all_steps))


def run_rate_key(namespace: str, workflow: str) -> str:
    """Limiter key for run starts of one workflow (``spec.rateLimit``)."""
    return f"run:{namespace}/{workflow}"


def step_rate_key(namespace: str, key: str) -> str:
    """Limiter key for step starts under a named key (``steps[].rateLimit.key``)."""
    return f"step:{namespace}/{key}"


def run_slot_key(namespace: str, workflow: str) -> str:
    """Slot key for running runs of one workflow (``spec.concurrency.maxRuns``)."""
    return f"run:{namespace}/{workflow}"


def step_slot_key(namespace: str, key: str) -> str:
    """Slot key for running steps under a named key (``steps[].concurrency.key``)."""
    return f"step:{namespace}/{key}"


def step_holder(run_uid: str, step: str) -> str:
    """Holder id of a step's slot: unique per run and step, stable across attempts
    and operator restarts so a re-acquire after a crash is idempotent."""
    return f"{run_uid}/{step}"


class Waiter(NamedTuple):
    """A run waiting for a slot: ordered by priority (higher first), then creation time,
    then name (the tie-break Kubernetes users can see, since creationTimestamp has
    one-second resolution)."""

    created: datetime
    name: str
    priority: int = 0

    @property
    def order(self) -> tuple[int, datetime, str]:
        return (-self.priority, self.created, self.name)


def queue_rank(me: Waiter, waiting: Iterable[Waiter]) -> int:
    """How many of ``waiting`` must be admitted before ``me`` (``me`` may be among them).

    Pass every run of the workflow that has not started, is not finished and is due (a
    delayed run waits for its time, not for a slot); the result is the ``rank`` argument
    of ``Slots.acquire``.
    """
    mine = me.order
    return sum(1 for w in waiting if w.order < mine)


def priority_band(priority: int) -> int:
    """A priority's band in a Redis waiter queue: 0 (priority 1000, first) to 2000 (priority
    -1000, last); out-of-range values are clamped, since the queue score must stay exact."""
    return PRIORITY_MAX - max(PRIORITY_MIN, min(priority, PRIORITY_MAX))


def holder_run_uid(holder: str) -> str:
    """The run uid in a step holder id (``run-uid/step``); the operator wakes that run."""
    return holder.split("/", 1)[0]


def waiting_places(
    namespace: str, uid: str, spec: Mapping[str, Any], steps: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """(slot key, holder) of each step of a run that may hold a place in a step key's queue:
    a step with a ``concurrency`` key whose status is ``Waiting``. Their places are kept
    alive with the slot leases; a place that is no longer there is never re-created by this
    (a Waiting step that waits for a retry or a rate limit simply has none). ``spec`` and
    ``steps`` are the raw status.workflowSpec and status.steps of a started run."""
    out: list[tuple[str, str]] = []
    for step in [*(spec.get("steps") or []), *(spec.get("finally") or [])]:
        key = (step.get("concurrency") or {}).get("key")
        if key and (steps.get(step.get("name", "")) or {}).get("phase") == "Waiting":
            out.append((step_slot_key(namespace, key), step_holder(uid, step["name"])))
    return out
