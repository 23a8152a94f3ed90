"""Plain-data builders and a tiny pure 'cluster' for the engine tests (no mocks).

The simulator plays the adapter's part: it applies CreateJob/DeleteJob actions to a dict
of ObservedJobs and feeds the next reconcile with the status the previous plan returned.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from taskforge.api.run import (
    ReusedStep,
    StepStatus,
    TriggerInfo,
    WorkflowRef,
    WorkflowRunSpec,
    WorkflowRunStatus,
)
from taskforge.api.steps import Backoff, HttpStep, LogStep, RetryPolicy, Step
from taskforge.api.workflow import ParamSpec, WorkflowSpec
from taskforge.engine.actions import CreateJob, DeleteJob, EmitEvent, Plan
from taskforge.engine.facts import JobFailure, ObservedJob, RunFacts, WorkflowFacts
from taskforge.engine.naming import job_name
from taskforge.engine.planner import plan

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
RUN = "run1"
UID = "uid-1"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def step(name: str, *deps: str, message: str | None = None, **kw: Any) -> Step:
    """A log step (the cheapest type) unless another type is given in kw."""
    if not any(k in kw for k in ("http", "script", "container", "slack", "email")):
        kw["log"] = LogStep(message=message or f"hello from {name}")
    return Step(name=name, depends_on=list(deps) or None, **kw)


def http(name: str, *deps: str, url: str, **kw: Any) -> Step:
    return Step(name=name, depends_on=list(deps) or None, http=HttpStep(url=url), **kw)


def retry(limit: int, delay: str = "10s", *, factor: float = 2.0, max_delay: str = "10m",
          kind: Literal["exponential", "fixed"] = "exponential",
          on: Iterable[str] | None = None) -> RetryPolicy:
    extra: dict[str, Any] = {} if on is None else {"on": list(on)}
    return RetryPolicy(
        limit=limit,
        backoff=Backoff(type=kind, delay=delay, factor=factor, max_delay=max_delay),
        **extra,
    )


def workflow(*steps: Step, final: Iterable[Step] = (), params: Iterable[ParamSpec] = (),
             **kw: Any) -> WorkflowSpec:
    return WorkflowSpec(
        steps=list(steps), finally_steps=list(final) or None, params=list(params) or None, **kw
    )


def facts(
    spec: WorkflowSpec | None,
    status: WorkflowRunStatus | None = None,
    jobs: Iterable[ObservedJob] = (),
    now: datetime = T0,
    *,
    params: dict[str, Any] | None = None,
    cancel: bool = False,
    inline: bool = False,
    generation: int = 1,
    wf_generation: int = 3,
    trigger: TriggerInfo | None = None,
    reuse: dict[str, dict[str, Any]] | None = None,
) -> RunFacts:
    """RunFacts for run `run1`; `spec=None` means the referenced Workflow is missing."""
    run_spec = WorkflowRunSpec(
        workflow_ref=None if inline else WorkflowRef(name="wf"),
        workflow_spec=spec if inline else None,
        params=params,
        cancel=cancel,
        trigger=trigger,
        reuse_steps=[ReusedStep(name=k, outputs=v) for k, v in (reuse or {}).items()] or None,
    )
    wf = None if inline or spec is None else WorkflowFacts("wf", wf_generation, "wf-uid", spec)
    return RunFacts(
        name=RUN, namespace="ns", uid=UID, generation=generation, created_at=T0,
        spec=run_spec, status=status, workflow=wf, jobs=tuple(jobs), now=now,
    )


def result_json(ok: bool = True, outputs: dict[str, Any] | None = None, error: str | None = None,
                retryable: bool | None = None, retry_after: float | None = None) -> str:
    data: dict[str, Any] = {"ok": ok, "outputs": outputs or {}}
    if error is not None:
        data["error"] = error
    if retryable is not None:
        data["retryable"] = retryable
    if retry_after is not None:
        data["retryAfter"] = retry_after
    return json.dumps(data)


def job(step_name: str, attempt: int = 1, state: str = "Active", *, exit_code: int | None = None,
        failure: JobFailure | None = None, message: str | None = None,
        finished: datetime | None = None, run: str = RUN) -> ObservedJob:
    if state == "Succeeded" and exit_code is None:
        exit_code = 0
    if state == "Failed" and failure is None:
        failure = "Failed"
    return ObservedJob(
        name=job_name(run, step_name, attempt), step=step_name, attempt=attempt,
        state=state,  # type: ignore[arg-type]
        exit_code=exit_code, failure=failure, termination_message=message,
        finished_at=finished,
    )


def ok(step_name: str, attempt: int = 1, outputs: dict[str, Any] | None = None) -> ObservedJob:
    return job(step_name, attempt, "Succeeded", message=result_json(True, outputs))


def fail(step_name: str, attempt: int = 1, code: int = 75, **kw: Any) -> ObservedJob:
    message = kw.pop("message", None)
    if message is None:
        message = result_json(False, error=f"boom {step_name}#{attempt}")
    return job(step_name, attempt, "Failed", exit_code=code, message=message, **kw)


def creates(p: Plan) -> list[CreateJob]:
    return [a for a in p.actions if isinstance(a, CreateJob)]


def created(p: Plan) -> list[tuple[str, int]]:
    return [(a.step, a.attempt) for a in creates(p)]


def deletes(p: Plan) -> list[str]:
    return [a.job_name for a in p.actions if isinstance(a, DeleteJob)]


def events(p: Plan) -> list[tuple[str, str | None]]:
    return [(a.reason, a.step) for a in p.actions if isinstance(a, EmitEvent)]


def phases(p: Plan | WorkflowRunStatus) -> dict[str, str]:
    status = p.status if isinstance(p, Plan) else p
    return {k: v.phase for k, v in (status.steps or {}).items()}


def st(p: Plan, name: str) -> StepStatus:
    assert p.status.steps is not None
    return p.status.steps[name]


def cond(p: Plan) -> tuple[str, str]:
    c = next(c for c in p.status.conditions or () if c.type == "Succeeded")
    return c.status, c.reason


Outcome = Callable[[str, int], ObservedJob]
"""Decides how attempt `attempt` of a step ends (a finished ObservedJob)."""
ItemOutcome = Callable[[str, int, int], ObservedJob]
"""(step, item index, attempt) -> how that attempt of a forEach item ends."""


@dataclass
class Cluster:
    """Applies plans like the adapter would; every reconcile is one call to `plan`."""

    base: RunFacts
    outcome: Outcome = ok
    now: datetime = T0
    status: WorkflowRunStatus | None = None
    jobs: dict[str, ObservedJob] = field(default_factory=dict)
    names: dict[tuple[str, int], str] = field(default_factory=dict)
    plans: list[Plan] = field(default_factory=list)
    item_outcome: ItemOutcome | None = None
    """How attempt `attempt` of forEach item `index` of a step ends (default: `outcome`)."""

    def facts(self) -> RunFacts:
        return replace(self.base, status=self.status, jobs=tuple(self.jobs.values()), now=self.now)

    def reconcile(self, *, keep_status: bool = True) -> Plan:
        p = plan(self.facts())
        self.plans.append(p)
        for a in p.actions:
            if isinstance(a, CreateJob):
                self.names.setdefault((a.step, a.attempt), a.job_name)
                if a.job_name not in self.jobs:
                    self.jobs[a.job_name] = ObservedJob(a.job_name, a.step, a.attempt, "Active",
                                                        item=a.item)
            elif isinstance(a, DeleteJob) and a.job_name in self.jobs:
                old = self.jobs[a.job_name]
                if old.state == "Active":
                    self.jobs[a.job_name] = replace(old, state="Failed", failure="PodFailure")
        if keep_status:
            self.status = p.status
        return p

    def finish(self, only: Iterable[str] | None = None) -> int:
        """Let active jobs end as `outcome` says; returns how many ended."""
        wanted = set(only) if only is not None else None
        n = 0
        for name, j in list(self.jobs.items()):
            if j.state == "Active" and (wanted is None or j.step in wanted):
                if j.item is not None:
                    ended = (self.item_outcome(j.step, j.item, j.attempt) if self.item_outcome
                             else self.outcome(j.step, j.attempt))
                    self.jobs[name] = replace(ended, name=j.name, item=j.item,
                                              finished_at=self.now)
                else:
                    self.jobs[name] = replace(self.outcome(j.step, j.attempt),
                                              finished_at=self.now)
                n += 1
        return n

    def run(self, limit: int = 500) -> Plan:
        """Reconcile until the run is terminal, jumping the clock to each requeue."""
        for _ in range(limit):
            p = self.reconcile()
            if p.status.phase in ("Succeeded", "Failed", "Cancelled"):
                return p
            if not self.finish():
                self.now += timedelta(seconds=p.requeue_after if p.requeue_after else 1)
        raise AssertionError("run did not finish")
