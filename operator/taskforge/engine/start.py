"""The first reconcile of a run: find the workflow, validate it, pin it, resolve params.

Pinning copies the spec, the Workflow's generation and UID and the resolved params into
status. Every later reconcile reads only that copy, so editing or deleting the Workflow
never changes a run that is under way, and a restarted operator sees the same spec.
"""

from __future__ import annotations

import weakref
from typing import Literal

from taskforge.api.durations import format_duration, format_timestamp, to_millis
from taskforge.api.run import PinnedWorkflow, StepStatus, WorkflowRunStatus
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.actions import EmitEvent, Plan
from taskforge.engine.conditions import SUCCEEDED, check_when, set_condition
from taskforge.engine.dag import Dag, DagError, build_cached
from taskforge.engine.facts import RunFacts
from taskforge.engine.params import ParamsError, check_defaults, resolve_params
from taskforge.engine.results import bound_message, bound_outputs, output_budget
from taskforge.engine.template_refs import step_template_problems
from taskforge.engine.timing import SCHEDULED, not_before

WORKFLOW_NOT_FOUND_REQUEUE = 5.0


class InvalidWorkflowError(ValueError):
    """The workflow cannot run (cycle, unknown reference, bad `when`, bad default)."""


def validate_spec(spec: WorkflowSpec) -> Dag:
    """Everything about a spec that the CRD schema and its CEL rules cannot check.

    Shared by run start (reason InvalidWorkflow) and the Workflow's Valid condition.
    """
    try:
        dag = build_cached(spec)
    except DagError as exc:
        raise InvalidWorkflowError(str(exc)) from exc
    for field, group in (("spec.steps", spec.steps), ("spec.finally", spec.finally_steps or [])):
        for i, step in enumerate(group):
            if step.when is not None:
                problem = check_when(step.when)
                if problem is not None:
                    raise InvalidWorkflowError(f"{field}[{i}].when: {problem}")
    try:
        check_defaults(list(spec.params or ()))
    except ParamsError as exc:
        raise InvalidWorkflowError(str(exc)) from exc
    problems = _template_problems(spec, dag)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InvalidWorkflowError(problems[0] + more)
    return dag


_TEMPLATE_CHECKS: dict[int, tuple[weakref.ref[WorkflowSpec], tuple[str, ...]]] = {}


def _template_problems(spec: WorkflowSpec, dag: Dag) -> tuple[str, ...]:
    """`step_template_problems`, memoised on the spec's identity like `build_cached`: the
    adapter hands every run of one Workflow version the same parsed spec, so a burst of runs
    parses its templates once."""
    key = id(spec)
    hit = _TEMPLATE_CHECKS.get(key)
    if hit is not None and hit[0]() is spec:
        return hit[1]
    problems = tuple(step_template_problems(spec, dag))
    if len(_TEMPLATE_CHECKS) >= 256:
        _TEMPLATE_CHECKS.pop(next(iter(_TEMPLATE_CHECKS)))
    _TEMPLATE_CHECKS[key] = (weakref.ref(spec), problems)
    return problems


def _failed(
    facts: RunFacts,
    reason: str,
    message: str,
    pinned: PinnedWorkflow | None,
    phase: Literal["Failed", "Cancelled"] = "Failed",
) -> Plan:
    """A run that ends before it starts: invalid, or cancelled while still Pending."""
    now = to_millis(facts.now)
    message = bound_message(message)
    old = facts.status or WorkflowRunStatus()
    status = WorkflowRunStatus(
        phase=phase,
        observed_generation=facts.generation,
        conditions=set_condition(
            old.conditions,
            type_=SUCCEEDED,
            status="False",
            reason=reason,
            message=message,
            now=now,
            observed_generation=facts.generation,
        ),
        workflow=pinned,
        started_at=now,
        finished_at=now,
        duration=format_duration(0),
        message=message,
    )
    event = EmitEvent(type="Warning", reason=reason, message=message)
    return Plan(actions=(event,), status=status, requeue_after=None)


def _pending(
    facts: RunFacts,
    reason: str,
    message: str,
    event_type: Literal["Normal", "Warning"],
    requeue_after: float | None,
) -> Plan:
    """A run that cannot start yet (its workflow is missing, or the limits hold it): Pending,
    saying why, looked at again when that may have changed. It is never failed for waiting,
    and its Event is posted only when the reason or message changes."""
    old = facts.status or WorkflowRunStatus()
    conditions = set_condition(
        old.conditions,
        type_=SUCCEEDED,
        status="Unknown",
        reason=reason,
        message=message,
        now=to_millis(facts.now),
        observed_generation=facts.generation,
    )
    status = old.model_copy(
        update={
            "phase": "Pending",
            "observed_generation": facts.generation,
            "conditions": conditions,
            "message": message,
        }
    )
    changed = facts.status is None or facts.status.conditions != conditions
    events = (EmitEvent(type=event_type, reason=reason, message=message),)
    return Plan(actions=events if changed else (), status=status, requeue_after=requeue_after)


def start_run(facts: RunFacts) -> WorkflowRunStatus | Plan:
    """A pinned, Running status to plan on; or a finished Plan (Pending or Failed)."""
    run_spec = facts.spec
    due = not_before(run_spec.start_at, run_spec.start_after, facts.created_at, facts.now)
    if due is not None:
        # Before the workflow is even looked at: it may be created by then. The requeue is
        # the exact wake-up; a restarted operator derives the same instant from the spec.
        if run_spec.cancel:
            return _failed(facts, "Cancelled", "cancelled before it started", None,
                           phase="Cancelled")
        return _pending(facts, SCHEDULED, f"scheduled to start at {format_timestamp(due)}",
                        "Normal", max((due - facts.now).total_seconds(), 0.0))
    pinned: PinnedWorkflow | None = None
    if run_spec.workflow_spec is not None:
        spec = run_spec.workflow_spec
    else:
        ref = run_spec.workflow_ref.name if run_spec.workflow_ref else ""
        wf = facts.workflow
        if wf is None or wf.name != ref:
            if run_spec.cancel:
                return _failed(facts, "Cancelled", "cancelled before it started", None,
                               phase="Cancelled")
            return _pending(
                facts, "WorkflowNotFound",
                f"workflow {ref!r} not found in namespace {facts.namespace!r}",
                "Warning", WORKFLOW_NOT_FOUND_REQUEUE,
            )
        spec = wf.spec
        pinned = PinnedWorkflow(name=wf.name, generation=wf.generation, uid=wf.uid)
    try:
        dag = validate_spec(spec)
    except InvalidWorkflowError as exc:
        if pinned is not None and not run_spec.cancel:
            # The Workflow may still be fixed (it shows Valid=False meanwhile): wait, and be
            # looked at again when it changes, rather than fail a run that never started.
            return _pending(facts, "InvalidWorkflow", f"workflow {pinned.name!r} is invalid:"
                            f" {exc}", "Warning", None)
        return _failed(facts, "InvalidWorkflow", str(exc), pinned)
    reused = {}
    for i, item in enumerate(run_spec.reuse_steps or ()):
        if item.name not in dag.steps:
            return _failed(
                facts,
                "InvalidWorkflow",
                f"spec.reuseSteps[{i}].name: the workflow has no step {item.name!r}",
                pinned,
            )
        reused[item.name] = item.outputs
    try:
        params = resolve_params(list(spec.params or ()), run_spec.params)
    except ParamsError as exc:
        return _failed(facts, "InvalidParams", str(exc), pinned)
    if facts.authorization is not None and facts.authorization.denied:
        return _failed(facts, "Forbidden", facts.authorization.denied, pinned)
    if facts.admission is not None and not facts.admission.allowed:
        if run_spec.cancel:
            return _failed(facts, "Cancelled", "cancelled before it started", pinned,
                           phase="Cancelled")
        held = facts.admission
        return _pending(facts, held.reason, held.message, "Normal", held.retry_after)
    return _pinned_status(
        facts, spec=spec, dag=dag, pinned=pinned, params=params, reused=reused
    )


def _pinned_status(
    facts: RunFacts,
    *,
    spec: WorkflowSpec,
    dag: Dag,
    pinned: PinnedWorkflow | None,
    params: dict[str, object],
    reused: dict[str, dict[str, object] | None],
) -> WorkflowRunStatus:
    now = to_millis(facts.now)
    pending = StepStatus(phase="Pending")
    limit = output_budget(len(dag.order))
    steps: dict[str, StepStatus] = {}
    for name in dag.order:
        if name in reused:
            steps[name] = StepStatus(
                phase="Succeeded",
                finished_at=now,
                outputs=bound_outputs(reused[name], limit) or None,
                reused=True,
                message="result reused from an earlier run",
            )
        else:
            steps[name] = pending
    old = facts.status or WorkflowRunStatus()
    return old.model_copy(
        update={
            "phase": "Running",
            "observed_generation": facts.generation,
            "workflow": pinned,
            "workflow_spec": spec,
            "params": params,
            "started_at": now,
            "steps": steps,
            "message": None,
        }
    )
