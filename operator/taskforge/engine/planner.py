"""`plan(facts) -> Plan`: one reconcile of a WorkflowRun, as a pure function.

Each call reads the pinned spec and the step statuses, folds in what the observed Jobs
report, and decides what to launch, skip, retry, cancel or finish. Nothing is remembered
between calls: a restarted operator gets the same plan from the same facts, and planning a
status that a crash left half-applied yields exactly the missing actions (Job names are
deterministic, so repeating a CreateJob is harmless, and Jobs the status does not record
are adopted).

Failure semantics follow Tekton: when a main step fails without `continueOnFailure`, steps
that are running are allowed to finish (their failures are no longer retried), no new main
step starts (not-started ones become Skipped), then the finally steps run and the run ends
Failed with a dead-letter record. Cancellation and the run timeout instead stop running
main steps at once (DeleteJob), mark them Cancelled and then run the finally steps; a
cancel that arrives while finally steps run stops those too. The run timeout covers the
main steps only: finally steps are bounded by their own step timeouts.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from taskforge.api.durations import parse_duration, to_millis
from taskforge.api.run import TERMINAL_RUN_PHASES, StepFailure, StepStatus, WorkflowRunStatus
from taskforge.engine import approval, fanout, subflow
from taskforge.engine import attempts as history
from taskforge.engine import status as runstatus
from taskforge.engine.actions import Action, CreateJob, DeleteJob, Plan
from taskforge.engine.conditions import WhenError, evaluate_when
from taskforge.engine.dag import Dag, DagError, build_cached
from taskforge.engine.facts import ObservedJob, RunFacts
from taskforge.engine.health import run_health
from taskforge.engine.naming import job_labels, job_name
from taskforge.engine.observe import adopt, failed, fold
from taskforge.engine.podsettings import merge_pod_settings
from taskforge.engine.results import bound_message
from taskforge.engine.runoutputs import OUTPUTS_FAILED, OutputsError, render_outputs
from taskforge.engine.start import start_run
from taskforge.engine.status import CANCELLING, TIMING_OUT
from taskforge.engine.templating import (
    Renderer,
    TemplateError,
    TemplateLimitError,
    render_in_process,
    render_step_config,
)
from taskforge.engine.work import TERMINAL, Work

__all__ = ["plan"]

REPEAT_RENDER_SECONDS = 5.0


def plan(facts: RunFacts, render: Renderer = render_in_process) -> Plan:
    """Decide the next actions and the new status of a run from its facts alone.

    `render` renders the step configs that need real Jinja (see engine.templating): the
    in-process default for tests; the operator injects one backed by worker processes.
    Every plan's status carries the kstatus conditions derived from its phase (engine/health.py).
    """
    result = _plan(facts, render)
    healthy = run_health(result.status, facts.generation, to_millis(facts.now))
    if healthy is result.status:
        return result
    return Plan(actions=result.actions, status=healthy, requeue_after=result.requeue_after)


def _plan(facts: RunFacts, render: Renderer) -> Plan:
    status = facts.status
    if status is not None and status.phase in TERMINAL_RUN_PHASES:
        deletes = delete_active(facts.jobs, status.steps or {}, set())
        return Plan(actions=tuple(deletes), status=status, requeue_after=None)
    if status is None or status.workflow_spec is None:
        started = start_run(facts)
        if isinstance(started, Plan):
            return started
        status = started
    spec = status.workflow_spec
    assert spec is not None  # start_run pins it
    try:
        dag = build_cached(spec)
    except DagError as exc:  # only a status edited by hand can get here
        empty = Dag(steps={}, deps={}, main=(), final=(), order=(), final_set=frozenset())
        result = runstatus.Outcome("Failed", "InvalidWorkflow", str(exc))
        new, event = runstatus.finish_status(
            status, steps=dict(status.steps or {}), phase={}, dag=empty,
            generation=facts.generation, now=to_millis(facts.now), result=result,
            letter=None,
        )
        return Plan(actions=(event,), status=new, requeue_after=None)
    work = Work(facts, status, spec, dag)
    work.render = render
    return _reconcile(work, status)


# Step phases in which the latest attempt's end is recorded in status.
_ENDED_ATTEMPT = frozenset({"Retrying", "Waiting", "Succeeded", "Failed"})


def delete_active(
    jobs: tuple[ObservedJob, ...], steps: dict[str, StepStatus], done: set[str]
) -> list[Action]:
    """DeleteJob for every active Job that is not its step's current running attempt.

    A Job of an attempt whose end the status already recorded is left alone even if it
    looks active: status only records an end from a terminated pod or a failed Job, so
    "active" there means the cache has not caught up (an operator that just restarted lists
    Jobs before their pods). Deleting it would only throw away that attempt's pod and logs.
    """
    out: list[Action] = []
    for job in jobs:
        if job.state != "Active" or job.name in done:
            continue
        if job.item is not None:  # a forEach item's attempt (engine/fanout.py)
            if fanout.orphaned(job, steps.get(job.step)):
                out.append(DeleteJob(job.name, f"step {job.step!r} item {job.item} is done"))
                done.add(job.name)
            continue
        st = steps.get(job.step)
        if st is not None and st.phase == "Running" and st.attempts == job.attempt:
            continue
        if st is not None and st.phase in _ENDED_ATTEMPT and job.attempt <= st.attempts:
            continue
        phase = st.phase if st is not None else "unknown"
        out.append(DeleteJob(job.name, f"step {job.step!r} is {phase}, attempt {job.attempt}"))
        done.add(job.name)
    return out


def _deadline(work: Work, started_at: datetime | None) -> datetime | None:
    if work.spec.timeout is None or started_at is None:
        return None
    return started_at + timedelta(seconds=parse_duration(work.spec.timeout))


def _reconcile(work: Work, status: WorkflowRunStatus) -> Plan:
    dag, spec = work.dag, work.facts.spec
    main_was_done = work.main_done
    latched = runstatus.latched_cause(status)
    cause = latched
    deadline = _deadline(work, status.started_at)
    if cause is None and not main_was_done:
        if spec.cancel:
            cause = CANCELLING
        elif deadline is not None and work.now >= deadline:
            cause = TIMING_OUT
    cancel_finally = cause is None and main_was_done and spec.cancel
    adopt(work)
    fold(work, stop_main=cause is not None, stop_final=cancel_finally)
    if cause is not None and latched is None:
        if cause == CANCELLING:
            work.emit("Warning", "RunCancelling", "cancelled: stopping running steps")
        else:
            work.emit("Warning", "RunTimingOut",
                      f"the run timed out after {work.spec.timeout}: stopping running steps")
    if cause is not None:
        _cancel(work, dag.main, "cancelled" if cause == CANCELLING else "run timed out")
    elif not main_was_done:
        _advance(work, dag.main, final=False)
    if cancel_finally:
        _cancel(work, dag.final, "cancelled")
        cause = CANCELLING
    elif work.main_done:
        _advance(work, dag.final, final=True)
    elif deadline is not None and cause is None:
        work.wakeups.append(deadline)
    work.actions.extend(delete_active(work.facts.jobs, work.steps, work.deleted))
    return _result(work, status, cause)


def _result(work: Work, status: WorkflowRunStatus, cause: str | None) -> Plan:
    facts, dag = work.facts, work.dag
    if work.all_done:
        outcome = runstatus.outcome(dag, work.steps, work.phase, cause, work.spec.timeout)
        outputs = None
        if outcome.phase == "Succeeded":
            try:
                outputs = render_outputs(work.spec.outputs, work.ctx.for_templates(),
                                         work.render)
            except OutputsError as exc:
                outcome = runstatus.Outcome("Failed", OUTPUTS_FAILED, bound_message(str(exc)))
        letter = None
        if outcome.failed_step is not None:
            letter = runstatus.dead_letter(facts.uid, work.workflow, outcome.failed_step,
                                           work.steps[outcome.failed_step], work.stamp)
        new, event = runstatus.finish_status(
            status, steps=work.steps, phase=work.phase, dag=dag,
            generation=facts.generation, now=work.stamp, result=outcome, letter=letter,
        )
        if outputs is not None:
            new = new.model_copy(update={"outputs": outputs})
        new = _with_item_progress(new, work)
        work.actions.append(event)
        return Plan(actions=tuple(work.actions), status=new, requeue_after=None)
    new = runstatus.running_status(
        status, steps=work.steps, phase=work.phase, dag=dag, generation=facts.generation,
        now=work.stamp, cause=cause, failing=work.failing,
        awaiting=tuple(approval.awaiting(work)) if dag.approvals else (),
    )
    new = _with_item_progress(new, work)
    requeue = None
    if work.more:
        requeue = 0.0
    elif work.wakeups:
        requeue = max((min(work.wakeups) - work.now).total_seconds(), 0.0)
    return Plan(actions=tuple(work.actions), status=new, requeue_after=requeue)


def _with_item_progress(status: WorkflowRunStatus, work: Work) -> WorkflowRunStatus:
    """`itemProgress` (forEach items ended / all) for `kubectl get -o wide` and the CLI."""
    if not work.dag.fanout:
        return status
    progress = fanout.item_progress(work.steps)
    if progress == status.item_progress:
        return status
    return status.model_copy(update={"item_progress": progress})


def _advance(work: Work, names: tuple[str, ...], *, final: bool) -> None:
    """Visit steps in topological order: skip, wait, retry, or launch them.

    Topological order means a skip or a launch decided here is seen by the step's
    dependents in the same pass, so a skipped branch is skipped entirely in one reconcile.
    """
    phase, deps_of, tolerant = work.phase, work.dag.deps, work.dag.tolerant
    final_set = work.dag.final_set
    for name in names:
        ph = phase[name]
        if ph in TERMINAL:
            continue
        st = work.get(name)
        if ph == "Running" and st.items is not None:
            fanout.advance(work, name, st, halt_run=not final and work.failing is not None)
            continue
        if ph == "Running" and st.child_run is not None:
            subflow.advance(work, name, st)
            continue
        if ph == "Running":
            if (name, st.attempts) not in work.jobs:  # created but not observed (yet)
                _launch(work, name, st, st.attempts, again=True)
            continue
        if ph == "Pending":
            waiting = False
            blocker = None
            for dep in deps_of[name]:
                dep_phase = phase[dep]
                if dep_phase not in TERMINAL:
                    waiting = True
                elif dep_phase != "Succeeded" and not (final and dep not in final_set) and (
                    dep_phase != "Failed" or dep not in tolerant
                ):
                    blocker = dep
                    break
            if blocker is not None:
                what = "failed" if phase[blocker] == "Failed" else f"was {phase[blocker]}"
                _skip(work, name, st, f"dependency {blocker!r} {what}")
            elif not final and work.failing is not None:
                _not_started(work, name, st)
            elif not waiting:
                _consider(work, name, st)
            continue
        if not final and work.failing is not None:
            _not_started(work, name, st)
            continue
        if ph == "Waiting" and approval.is_approval(work, name):
            approval.advance(work, name, st)
            continue
        due = st.next_attempt_at if ph == "Retrying" else st.wait_until
        offered = ph == "Waiting" and name in work.facts.slot_offers  # a slot was freed for it
        if due is None or due <= work.now or offered:
            _launch(work, name, st, st.attempts + 1)
        else:
            work.wakeups.append(due)


def _consider(work: Work, name: str, st: StepStatus) -> None:
    """A Pending step whose dependencies are done: check `when`, then launch."""
    when = work.dag.steps[name].when
    if when is not None:
        try:
            go = evaluate_when(when, work.ctx.for_cel(when))
        except WhenError as exc:
            failed(work, name, st, None, f"when: {exc}{work.ctx.outputs_hint(when)}")
            return
        if not go:
            _skip(work, name, st, f"when {when!r} is false")
            return
    if fanout.is_fanout(work, name):
        fanout.start(work, name, st)
        return
    if work.dag.steps[name].workflow is not None:
        subflow.start(work, name, st)
        return
    if work.dag.steps[name].approval is not None:
        approval.start(work, name, st)
        return
    _launch(work, name, st, st.attempts + 1)


def _skip(work: Work, name: str, st: StepStatus, why: str) -> None:
    work.set(name, st, phase="Skipped", finished_at=work.stamp, message=bound_message(why))
    work.emit("Normal", "StepSkipped", f"step {name!r} skipped: {why}", name)


def _not_started(work: Work, name: str, st: StepStatus) -> None:
    """The run is failing: a step that has not started never will (Tekton's stopping)."""
    why = f"the run is failing (step {work.failing!r} failed)"
    if st.attempts == 0:
        work.set(name, st, phase="Skipped", finished_at=work.stamp, wait_until=None,
                 message=f"not started: {why}")
    else:
        work.set(name, st, phase="Cancelled", finished_at=work.stamp, next_attempt_at=None,
                 wait_until=None, message=f"attempt {st.attempts} failed; not retried: {why}")


def _cancel(work: Work, names: tuple[str, ...], why: str) -> None:
    for name in names:
        if work.phase[name] in TERMINAL:
            continue
        st = work.get(name)
        if st.items is not None:
            fanout.cancel(work, name, st, why)
            continue
        if st.child_run is not None:
            subflow.cancel(work, name, st, why)
            continue
        if st.phase == "Running" and st.job_name and st.job_name not in work.deleted:
            work.actions.append(DeleteJob(st.job_name, f"step {name!r}: {why}"))
            work.deleted.add(st.job_name)
        ended = history.ended(
            st, at=work.stamp, exit_code=None, reason="Cancelled", message=why, retrying=False,
            limit=history.history_limit(len(work.dag.order)),
        ) if st.phase == "Running" else {}
        work.set(name, st, phase="Cancelled", finished_at=work.stamp, next_attempt_at=None,
                 wait_until=None, message=why, **ended)


def _timeout_seconds(work: Work, name: str) -> int | None:
    text = work.dag.steps[name].timeout or work.spec.step_timeout
    return None if text is None else max(1, math.ceil(parse_duration(text)))


def _launch(work: Work, name: str, st: StepStatus, attempt: int, *, again: bool = False) -> None:
    """CreateJob for `attempt`; a template error fails the step for good (no Job).

    Never retried, whatever the step's retry policy says: the same template renders the
    same way again. A TemplateLimitError (over a cap on size or work, or out of time) marks
    the step's failure as TemplateLimit, so the run ends with that reason.
    """
    if not again:  # repeats are not new work: they never wait for the budget
        if work.launch_budget <= 0:
            work.more = True  # left as it is: the next plan, at once, offers it again
            return
        work.launch_budget -= 1
    step = work.dag.steps[name]
    try:
        config = render_step_config(step, work.ctx.for_templates(), work.render)
    except TemplateError as exc:
        if again:
            # The Job was created from an earlier render; only a limit of time can fail
            # now (a busy node). Never fail a step whose Job may be running for that:
            # skip the repeat and look again a little later.
            work.wakeups.append(work.now + timedelta(seconds=REPEAT_RENDER_SECONDS))
            return
        kind: StepFailure | None = None
        if isinstance(exc, TemplateLimitError):
            kind = "TemplateLimit"
        failed(work, name, st, None, str(exc), failure=kind)
        return
    run = work.facts.name
    # A repeat keeps the name the status records: it may be the hashed fallback the
    # adapter chose when another run's Job held the readable name.
    recorded = st.job_name if again and st.attempts == attempt else None
    name_of_job = recorded or job_name(run, name, attempt)
    work.actions.append(CreateJob(
        step=name, attempt=attempt, job_name=name_of_job, step_type=step.step_type,
        config=config, timeout_seconds=_timeout_seconds(work, name),
        labels=job_labels(work.workflow, run, name, attempt), is_new=not again,
        pod=merge_pod_settings(work.spec.pod, step.pod),
    ))
    if again:
        return
    work.set(name, st, phase="Running", attempts=attempt, job_name=name_of_job,
             started_at=st.started_at or work.stamp, exit_code=None, next_attempt_at=None,
             wait_until=None, message=None,
             **history.started(st, attempt, work.stamp,
                               history.history_limit(len(work.dag.order))))
    work.emit("Normal", "StepStarted",
              f"step {name!r} started: attempt {attempt}, job {name_of_job}", name)
