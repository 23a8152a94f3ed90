"""The run reconciler's failure paths: retry with backoff, fail for size, fail as invalid.

Three kinds of failure, three answers:
  * an error that a retry may cure (API server away, a conflict storm, a bug): retry with
    exponential backoff per run (handlers/queue.py) and say so with a Warning Event, at a
    falling rate (`report_due`), so a run that fails for hours neither spins nor spams;
  * a write the API server refuses for its size (engine/sizes.py): no retry can cure it,
    so the run fails at once with `StatusTooLarge` / `JobTooLarge` in a minimal status;
  * a spec the models reject: `InvalidSpec`, written once.
Dead-letter shipping that waits for Redis backs off the same way, per run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from taskforge.adapters import kube, metrics
from taskforge.api import TERMINAL_RUN_PHASES, WorkflowSpec
from taskforge.engine.actions import CreateJob, EmitEvent
from taskforge.engine.health import run_health_wire
from taskforge.engine.sizes import Oversize, job_too_large, oversize_patch, status_refused
from taskforge.handlers import runlog
from taskforge.handlers.limits import SHIP_RETRY, Limits
from taskforge.handlers.queue import ItemBackoff, WorkQueue, report_due
from taskforge.handlers.store import Key, Store

log = logging.getLogger("taskforge.reconcile")
RECONCILE_ERROR = "ReconcileError"
DEAD_LETTER_WAITING = "DeadLetterWaiting"


class TooLargeError(Exception):
    """The API server cannot store what the reconcile would write; carries why."""

    def __init__(self, oversize: Oversize) -> None:
        super().__init__(oversize.message)
        self.oversize = oversize


# When etcd refuses a Job as too large, the API server tries once more without managedFields,
# on the object its first attempt already defaulted: the Job controller's generated selector
# and controller-uid labels then fail validation, so the refusal reaches us as a 422 about
# the selector (seen with Kubernetes 1.36). The operator never sets a selector itself.
_JOB_RETRY_AFTER_TOO_LARGE = "`selector` not auto-generated"


def refused_job(exc: BaseException, action: CreateJob) -> TooLargeError | None:
    """A TooLargeError when the API server refused the attempt's Job for its size."""
    quirk = kube.is_status(exc, 422) and _JOB_RETRY_AFTER_TOO_LARGE in kube.api_message(exc)
    if not (kube.is_too_large(exc) or quirk):
        return None
    why = "storage refused it (reported by the API server as a 422 about the Job's selector)"
    return TooLargeError(job_too_large(action.step, action.attempt,
                                       why if quirk else kube.describe(exc)))


def refused_status(exc: BaseException) -> TooLargeError | None:
    """A TooLargeError when the API server refused the status write for its size."""
    return TooLargeError(status_refused(kube.describe(exc))) if kube.is_too_large(exc) else None


def retry_later(queue: WorkQueue[Key], key: Key, exc: BaseException, what: str) -> str | None:
    """Requeue a failed key after its backoff; the Event message when a report is due
    (the 1st, 2nd, 4th, ... failure in a row), else None. Logs either way."""
    delay = queue.add_rate_limited(key)
    failures = queue.failures(key)
    if not report_due(failures):
        log.warning("reconcile of %s %s/%s failed again (%d in a row; next in %.1fs): %s",
                    what, *key, failures, delay, exc)
        return None
    log.error("reconcile of %s %s/%s failed (%d in a row); retrying in %.1fs",
              what, *key, failures, delay, exc_info=exc)
    return failure_message(exc, failures, delay)


def failure_message(exc: BaseException, failures: int, delay: float) -> str:
    """What the Event says: the error in one line, how often it failed, when it retries."""
    what = kube.describe(exc) if kube.is_status(exc, *range(400, 600)) else f"{exc}"
    what = what.splitlines()[0] if what.strip() else type(exc).__name__
    times = "once" if failures == 1 else f"{failures} times in a row"
    return f"reconcile failed {times}, next try in {delay:.1f}s: {what[:400]}"


class RunFailures:
    """Mixed into RunReconciler (keeps reconcile.py to the happy path)."""

    store: Store
    queue: WorkQueue[Key]
    limits: Limits
    on_finished: Any
    ship_backoff: ItemBackoff[Key]
    _write_status: Callable[..., Any]
    _post_in_background: Callable[[dict[str, Any], EmitEvent, datetime], None]

    def _retry_later(self, key: Key, exc: BaseException) -> None:
        """Back off, then try the run again; a Warning Event at the 1st, 2nd, 4th... failure."""
        message = retry_later(self.queue, key, exc, "run")
        body = self.store.run(key)
        if message is not None and body is not None:
            event = EmitEvent("Warning", RECONCILE_ERROR, message)
            self._post_in_background(body, event, datetime.now(UTC))

    def _ship_backoff(self, key: Key, body: dict[str, Any], wanted: float | None) -> float | None:
        """The delay before the next try to ship a dead letter, doubling per run while Redis
        stays away (SHIP_RETRY up to 5 minutes); an Event at the 1st, 2nd, 4th... miss."""
        if wanted is None:
            self.ship_backoff.forget(key)
            return None
        delay = max(wanted, self.ship_backoff.when(key))
        misses = self.ship_backoff.failures(key)
        if report_due(misses):
            message = (f"the dead-letter record waits in status: Redis is unreachable"
                       f" ({misses} tries; next in {delay:.0f}s)")
            self._post_in_background(body, EmitEvent("Warning", DEAD_LETTER_WAITING, message),
                                     datetime.now(UTC))
        return delay

    async def _fail_oversize(
        self,
        key: Key,
        body: dict[str, Any],
        oversize: Oversize,
        now: datetime,
        spec: WorkflowSpec | None,
    ) -> None:
        """Fail a run that cannot be stored: a minimal status, one Event, never a retry."""
        old = body.get("status") or {}
        log.warning("run %s/%s fails: %s: %s", *key, oversize.reason, oversize.message)
        metrics.RUNS_TOO_LARGE.labels(oversize.reason).inc()
        patch = oversize_patch(old, oversize, now, body["metadata"].get("generation"))
        self._post_in_background(body, EmitEvent("Warning", oversize.reason, oversize.message),
                                 now)
        written = await self._write_status(key, body, patch)
        if written is None or old.get("phase") in TERMINAL_RUN_PHASES:
            return
        runlog.record_failure(key[0], body, written.get("status") or {})
        workflow = ((body.get("spec") or {}).get("workflowRef") or {}).get("name")
        metrics.RUNS_FINISHED.labels(key[0], metrics.workflow_label(workflow),
                                     runlog.trigger_of(body), "Failed").inc()
        if workflow and spec is not None and spec.concurrency is not None:
            await self.limits.release_run(key[0], workflow, str(body["metadata"].get("uid", "")))
        if self.on_finished is not None:
            self.on_finished(key, body, written.get("status") or {})

    async def _write_invalid(
        self, key: Key, body: dict[str, Any], exc: ValidationError, now: datetime
    ) -> None:
        """A run the models reject cannot be planned: say why in its status, once."""
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        message = f"{field}: {first['msg']}"
        status = body.get("status") or {}
        if status.get("phase") == "Failed" and status.get("message") == message:
            return
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {
            "type": "Succeeded",
            "status": "False",
            "reason": "InvalidSpec",
            "message": message,
            "lastTransitionTime": stamp,
            "observedGeneration": body["metadata"].get("generation"),
        }
        generation = body["metadata"].get("generation")
        patch = {
            "phase": "Failed",
            "message": message,
            "finishedAt": stamp,
            "observedGeneration": generation,
            "conditions": run_health_wire("Failed", [condition], generation, now),
        }
        written = await self._write_status(key, body, patch)
        if written is not None:
            runlog.record_failure(key[0], body, written.get("status") or {})


def ship_backoff() -> ItemBackoff[Key]:
    return ItemBackoff(base=SHIP_RETRY, cap=300.0)
