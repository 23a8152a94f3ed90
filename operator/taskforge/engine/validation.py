"""Workflow validation beyond the CRD schema, and the Workflow's status summary.

CEL rules in the CRD cannot follow a graph, so cycles are found here, together
with template syntax errors, templates that read undeclared params or steps that are not
upstream, `when` expressions that do not compile, bad param defaults and cron schedules
or time zones that do not parse. One module, several callers: the validating admission
webhook (rejects at apply), `taskforge validate`, the Valid condition and run start. The
result is the `Valid` condition: users see it in `kubectl get` and GitOps tools
read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from taskforge.api.common import Condition
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.conditions import check_when, get_condition, set_condition
from taskforge.engine.dag import DagError, build
from taskforge.engine.health import workflow_health
from taskforge.engine.limits import wants_limits
from taskforge.engine.params import ParamsError, check_defaults
from taskforge.engine.schedule import ScheduleError, SchedulePlan, compile_schedule
from taskforge.engine.template_refs import step_template_problems


def validate_workflow(spec: WorkflowSpec) -> list[str]:
    """Every problem that would stop a run, each naming its field; [] when valid.

    Unlike run start (which stops at the first), this lists them all, for the Valid
    condition and `taskforge validate`.
    """
    try:
        dag = build(spec)
    except DagError as exc:
        return [str(exc)]
    problems: list[str] = []
    for group, steps in (("spec.steps", spec.steps), ("spec.finally", spec.finally_steps or [])):
        for i, step in enumerate(steps):
            if step.when is not None:
                error = check_when(step.when)
                if error:
                    problems.append(f"{group}[{i}].when: {error}")
    problems += step_template_problems(spec, dag)
    try:
        check_defaults(list(spec.params or ()))
    except ParamsError as exc:
        problems.append(str(exc))
    schedule = spec.triggers.schedule if spec.triggers else None
    if schedule is not None:
        compiled = compile_schedule(schedule)
        if isinstance(compiled, ScheduleError):
            problems.append(str(compiled))
    return problems


def _limits_condition(
    conditions: list[Condition], spec: WorkflowSpec | None, redis_configured: bool,
    generation: int, now: datetime, *, redis_outage: str | None = None,
) -> list[Condition]:
    """`LimitsEnforced`: present only when the workflow asks for rate or concurrency limits;
    False while Redis is unreachable and the open policy lets work skip them, so a skipped
    limit is never silent."""
    if spec is None or not wants_limits(spec):
        return [c for c in conditions if c.type != "LimitsEnforced"]
    if redis_configured and redis_outage:
        return set_condition(conditions, type_="LimitsEnforced", status="False",
                             reason="RedisUnavailable", message=redis_outage[:1024], now=now,
                             observed_generation=generation)
    if redis_configured:
        return set_condition(conditions, type_="LimitsEnforced", status="True",
                             reason="RedisConfigured", message="limits are enforced in Redis",
                             now=now, observed_generation=generation)
    return set_condition(
        conditions, type_="LimitsEnforced", status="False", reason="RedisNotConfigured",
        message="the workflow sets rateLimit or concurrency, but the operator has no REDIS_URL:"
                " the limits are not enforced", now=now, observed_generation=generation)


def workflow_status(
    *,
    old_status: dict[str, Any],
    spec: WorkflowSpec | None,
    spec_error: str | None,
    generation: int,
    runs: Sequence[dict[str, Any]],
    now: datetime,
    redis_configured: bool = True,
    redis_outage: str | None = None,
) -> dict[str, Any]:
    """The Workflow's status: Valid condition, step count, newest run, active runs.

    Fields owned by the scheduler (lastScheduleTime, nextScheduleTime) pass through.
    """
    problems = [spec_error] if spec_error else validate_workflow(spec) if spec else ["no spec"]
    conditions = [Condition.model_validate(c) for c in old_status.get("conditions") or []]
    if problems:
        conditions = set_condition(
            conditions, type_="Valid", status="False", reason="InvalidWorkflow",
            message="; ".join(problems)[:1024], now=now, observed_generation=generation,
        )
    else:
        conditions = set_condition(
            conditions, type_="Valid", status="True", reason="Valid",
            message="the workflow is valid", now=now, observed_generation=generation,
        )
    valid = get_condition(conditions, "Valid")
    assert valid is not None  # set just above
    conditions = workflow_health(conditions, valid=valid.status == "True", reason=valid.reason,
                                 message=valid.message, now=now, generation=generation)
    conditions = _limits_condition(conditions, spec, redis_configured, generation, now,
                                   redis_outage=redis_outage)
    status = dict(old_status)
    status["observedGeneration"] = generation
    status["conditions"] = [c.to_k8s() for c in conditions]
    if spec is not None:
        status["stepCount"] = len(spec.steps) + len(spec.finally_steps or [])
    newest = max(runs, key=lambda r: (str(r.get("created") or ""), str(r.get("name"))),
                 default=None)
    if newest is not None:
        status["lastRun"] = newest["name"]
        if newest.get("created"):
            status["lastRunTime"] = newest["created"]
    active = [
        {"name": r["name"], "uid": r.get("uid")}
        for r in sorted(runs, key=lambda r: str(r.get("name")))
        if r.get("phase") in ("Pending", "Running")
    ]
    if active:
        status["active"] = active
    else:
        status.pop("active", None)
    return status


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def with_schedule(
    status: dict[str, Any], plan: SchedulePlan | None, generation: int, now: datetime
) -> dict[str, Any]:
    """Fold a schedule plan into the Workflow's status (or drop schedule fields if none)."""
    out = dict(status)
    if plan is None:
        for key in ("lastScheduleTime", "nextScheduleTime"):
            out.pop(key, None)
        out["conditions"] = [c for c in out.get("conditions") or [] if c.get("type") != "Scheduled"]
        return out
    if plan.last_schedule_time is not None:
        out["lastScheduleTime"] = _stamp(plan.last_schedule_time)
    if plan.next_schedule_time is not None:
        out["nextScheduleTime"] = _stamp(plan.next_schedule_time)
    else:
        out.pop("nextScheduleTime", None)
    conditions = [Condition.model_validate(c) for c in out.get("conditions") or []]
    conditions = set_condition(
        conditions, type_=plan.condition.type, status=plan.condition.status,
        reason=plan.condition.reason, message=plan.condition.message[:1024], now=now,
        observed_generation=generation,
    )
    out["conditions"] = [c.to_k8s() for c in conditions]
    return out
