"""Folding what the Jobs report into the step statuses: success, retry or failure.

Runs first in every plan, before anything is launched, so a failure observed in this
reconcile already stops new main steps from starting in the same reconcile.
"""

from __future__ import annotations

from datetime import timedelta

from taskforge.api.durations import ceil_millis, format_duration
from taskforge.api.run import StepFailure, StepStatus
from taskforge.api.steps import FailureKind
from taskforge.engine import attempts as history
from taskforge.engine.facts import ObservedJob
from taskforge.engine.results import StepResult, bound_message, parse_result
from taskforge.engine.retry import RetryDecision, decide
from taskforge.engine.stored import keep_outputs, whole_outputs
from taskforge.engine.work import Work

_ADOPTABLE = frozenset({"Pending", "Retrying", "Waiting"})


def failure_text(kind: str, job: ObservedJob, result: StepResult, timeout: str) -> str:
    """Why an attempt failed, in words: the executor's error, or what Kubernetes saw."""
    if kind == "TimedOut":
        return f"timed out after {timeout}"
    if kind == "PodFailure" and not result.reported:
        return f"pod failure: {job.termination_message or 'the pod did not run'}"
    return result.error or "failed"


def timeout_text(work: Work, name: str) -> str:
    return work.dag.steps[name].timeout or work.spec.step_timeout or "its deadline"


def adopt(work: Work) -> None:
    """Take over Jobs whose launch the status does not record.

    That happens when the operator created a Job and then lost the status write (crash,
    conflict). The Job's name is the one this plan would choose anyway, so the step simply
    continues as that attempt instead of being launched again, skipped or cancelled blind.
    A failed attempt followed by an existing next attempt means a retry was launched.
    """
    phase = work.phase
    for job in work.facts.jobs:
        name = job.step
        if job.item is not None or phase.get(name) not in _ADOPTABLE:
            continue
        st = work.steps.get(name)
        attempts = st.attempts if st is not None else 0
        if job.attempt == attempts + 1:
            work.set(name, st or StepStatus(), phase="Running", attempts=job.attempt,
                     job_name=job.name, started_at=(st and st.started_at) or job.started_at
                     or work.stamp, next_attempt_at=None, wait_until=None, message=None,
                     **history.started(st or StepStatus(), job.attempt,
                                       job.started_at or work.stamp, _limit(work)))
    for name in [n for n in work.dag.order if phase[n] == "Running"]:
        st = work.steps[name]
        current = work.jobs.get((name, st.attempts))
        while current is not None and current.state == "Failed" and (
            (later := work.jobs.get((name, st.attempts + 1))) is not None
        ):
            st = work.set(name, st, attempts=later.attempt, job_name=later.name,
                          exit_code=current.exit_code, failure=current.failure or "Failed",
                          **_adopted_retry(work, st, current, later))
            current = later


def _limit(work: Work) -> int:
    return history.history_limit(len(work.dag.order))


def _adopted_retry(
    work: Work, st: StepStatus, failed_job: ObservedJob, later: ObservedJob
) -> dict[str, object]:
    """History changes for a retry found in the Jobs only: the failed attempt, the next."""
    ended = history.ended(
        st, at=history.end_time(failed_job.finished_at, work.stamp),
        exit_code=failed_job.exit_code, reason=failed_job.failure or "Failed", message=None,
        retrying=True, limit=_limit(work))
    moved = st.model_copy(update=ended)
    return history.started(moved, later.attempt, later.started_at or work.stamp, _limit(work))


def _attempt_end(
    work: Work, st: StepStatus, job: ObservedJob, message: str | None, *,
    retrying: bool = False,
) -> dict[str, object]:
    """The end of the step's current attempt: its history record, and `finished_at` unless
    the step is retried (finishedAt is when the step became terminal)."""
    end = history.end_time(job.finished_at, work.stamp)
    reason = "Succeeded" if job.state == "Succeeded" else (job.failure or "Failed")
    record = history.ended(
        st, at=end, exit_code=job.exit_code, reason=reason, message=message,
        retrying=retrying, limit=_limit(work))
    return record if retrying else {"finished_at": end} | record


def fold(work: Work, *, stop_main: bool, stop_final: bool) -> None:
    """Apply finished Jobs to their Running steps, in DAG order.

    Decisions are made for all failures first: if one of them fails the run, the others are
    not retried (a retry is a new start, and a failing run starts nothing new).
    """
    failures: list[tuple[str, StepStatus, ObservedJob, RetryDecision, str]] = []
    for name in [n for n in work.dag.order if work.phase[n] == "Running"]:
        st = work.steps[name]
        job = work.jobs.get((name, st.attempts))
        if job is None or job.state == "Active":
            continue
        if job.state == "Succeeded":
            _succeeded(work, name, st, job)
            continue
        kind: FailureKind = job.failure or "Failed"
        result = parse_result(job.termination_message, job.exit_code)
        error = bound_message(failure_text(kind, job, result, timeout_text(work, name)))
        decision = decide(work.dag.steps[name].retry or work.spec.retry, st.attempts, kind,
                          result)
        failures.append((name, st, job, decision, error))
        if not decision.retry:
            work.mark_failing(name, job.finished_at or work.stamp)
    for name, st, job, decision, error in failures:
        final = name in work.dag.final_set
        stopped = stop_final if final else (stop_main or work.failing is not None)
        if decision.retry and not stopped:
            _retrying(work, name, st, job, decision=decision, error=error)
        elif decision.retry:
            why = "the run is stopping" if stop_main or stop_final else (
                f"the run is failing (step {work.failing!r} failed)")
            work.set(name, st, phase="Cancelled", exit_code=job.exit_code,
                     failure=job.failure or "Failed",
                     **_attempt_end(work, st, job, error),
                     message=bound_message(
                         f"attempt {st.attempts} failed: {error}; not retried: {why}"))
        else:
            failed(work, name, st, job,
                   f"attempt {st.attempts} failed: {error}; {decision.reason}", error=error)


def _succeeded(work: Work, name: str, st: StepStatus, job: ObservedJob) -> None:
    work.set(name, st, phase="Succeeded",
             exit_code=job.exit_code if job.exit_code is not None else 0,
             **_kept_outputs(work, name, job),
             **_attempt_end(work, st, job, None),
             message=None, next_attempt_at=None)
    work.emit("Normal", "StepSucceeded", f"step {name!r} succeeded (attempt {st.attempts})",
              name)


def _kept_outputs(work: Work, name: str, job: ObservedJob) -> dict[str, object]:
    """`outputs` and `result` for status: the outputs when they fit the step's share, else a
    per-key summary and where the whole result is stored (StoreResult, applied before the
    status write; see engine/stored.py). Failed attempts keep what they reported too (an
    HTTP error's status and body, a script's stdout tail): a failure must be as debuggable
    as a success, and `continueOnFailure` dependents may read it."""
    outputs = whole_outputs(job)
    if outputs is None:
        outputs = parse_result(job.termination_message, job.exit_code).outputs
    kept, ref, store = keep_outputs(work.facts, work.output_limit, name, job.attempt, outputs)
    if store is not None:
        work.actions.append(store)
    if ref is not None and outputs:
        work.results[name] = outputs
    else:
        work.results.pop(name, None)
    return {"outputs": kept, "result": ref}


def _retrying(
    work: Work, name: str, st: StepStatus, job: ObservedJob, *, decision: RetryDecision,
    error: str,
) -> None:
    # The exact instant, to the millisecond (rounded up, so the wait is never cut short):
    # rounding up to a whole second made every wait up to a second longer than asked.
    at = ceil_millis(work.now + timedelta(seconds=decision.delay))
    message = bound_message(f"attempt {st.attempts} failed: {error}; attempt"
                            f" {st.attempts + 1} in {format_duration(decision.delay)}")
    work.set(name, st, phase="Retrying", exit_code=job.exit_code,
             failure=job.failure or "Failed", next_attempt_at=at, message=message,
             **_attempt_end(work, st, job, error, retrying=True),
             **_kept_outputs(work, name, job))
    work.emit("Warning", "StepRetrying", f"step {name!r}: {message}", name)


def failed(
    work: Work, name: str, st: StepStatus, job: ObservedJob | None, message: str, *,
    failure: StepFailure | None = None, error: str | None = None,
) -> None:
    """A step failed for good (exhausted, permanent, template or `when` error).

    `error` is the attempt's own failure, for its history record (`message` says more)."""
    attempt_end = _attempt_end(work, st, job, error or message) if job else {
        "finished_at": work.stamp}
    message = bound_message(message)
    kept = _kept_outputs(work, name, job) if job else {"outputs": st.outputs, "result": st.result}
    work.set(name, st, phase="Failed",
             **kept,
             exit_code=job.exit_code if job else st.exit_code,
             failure=failure or ((job.failure or "Failed") if job else "Failed"),
             **attempt_end,
             next_attempt_at=None, wait_until=None, message=message)
    work.emit("Warning", "StepFailed", f"step {name!r} failed: {message}", name)
