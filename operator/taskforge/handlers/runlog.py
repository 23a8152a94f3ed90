"""What a run's reconcile did, counted in metrics and told in the log.

The engine says what happened (`engine.telemetry.run_changes`, comparing the status a
reconcile read with the one it wrote); this records it. Called only after the status write
succeeded, so a conflict (which replans from the same old status) never counts twice.

Log lines: a run that failed or was cancelled, and a failed attempt, at INFO; a run's start,
its success and a succeeded attempt at DEBUG. At 5,000 runs a minute a line per success would
be most of the log and most of this module's cost (bench/bench_observability.py): successes
are counted in the metrics. Each line carries the run's fields (taskforge.logs: namespace,
workflow, run; step and attempt where one is meant).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from taskforge.adapters import metrics
from taskforge.api import WorkflowRunStatus
from taskforge.engine.telemetry import RunChanges, run_changes

log = logging.getLogger("taskforge.run")

RunObserver = Callable[[str, dict[str, Any], WorkflowRunStatus, RunChanges], None]
OBSERVERS: list[RunObserver] = []
"""Told what each reconcile changed, written or held for the coalescing window (held.py:
the decision is made, only its API write waits), e.g. the run archive (archiver.py); must
not block: they start background work at most."""
FailureObserver = Callable[[str, dict[str, Any], dict[str, Any]], None]
FAILURE_OBSERVERS: list[FailureObserver] = []
"""Told of a run failed outside the plan (too large to store, or a spec the models reject:
handlers/failures.py) with its body and the status as written; the same rules."""


def workflow_of(body: dict[str, Any]) -> str | None:
    ref = ((body.get("spec") or {}).get("workflowRef") or {}).get("name")
    return str(ref) if ref else None


def trigger_of(body: dict[str, Any]) -> str:
    """manual, schedule, webhook, retry or replay: the run's spec says (a bounded label)."""
    trigger = ((body.get("spec") or {}).get("trigger") or {}).get("type")
    return trigger if trigger in ("schedule", "webhook", "retry", "replay") else "manual"


def record(
    namespace: str, body: dict[str, Any], old: WorkflowRunStatus | None,
    new: WorkflowRunStatus, created_at: datetime,
) -> None:
    changes = run_changes(old, new, trigger=trigger_of(body), created_at=created_at)
    metrics.record_run_changes(namespace, workflow_of(body), changes)
    for observe in OBSERVERS:
        observe(namespace, body, new, changes)
    if changes.started and log.isEnabledFor(logging.DEBUG):
        log.debug("run started (trigger %s)", changes.trigger)
    for attempt in changes.attempts:
        level = logging.DEBUG if attempt.outcome == "succeeded" else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "step attempt ended: %s", attempt.outcome,
                    extra={"step": attempt.step, "attempt": attempt.attempt,
                           "outcome": attempt.outcome, "seconds": attempt.seconds})
    if changes.finished is not None:
        level = logging.DEBUG if changes.finished == "Succeeded" else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "run %s in %.3fs (%s)", changes.finished.lower(),
                    changes.run_seconds or 0.0, new.progress or "",
                    extra={"phase": changes.finished})


def record_failure(namespace: str, body: dict[str, Any], status: dict[str, Any]) -> None:
    """A run was failed without a plan (no WorkflowRunStatus to compare): tell the observers."""
    for observe in FAILURE_OBSERVERS:
        observe(namespace, body, status)


def reconcile_error_reason(exc: BaseException) -> str:
    """A bounded label for a failed reconcile: the error's class, with the API's status."""
    status = getattr(exc, "status", None)
    name = type(exc).__name__
    return f"{name}{status}" if isinstance(status, int) else name
