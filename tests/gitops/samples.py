"""Real statuses of every phase of both kinds, made by the engine itself (plan() and
workflow_status()), as the operator would write them: what kstatus and the Argo CD health
check are tested on. Each sample is a whole object (apiVersion, kind, metadata, spec, status).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from taskforge.api.run import WorkflowRef, WorkflowRunSpec, WorkflowRunStatus
from taskforge.api.steps import LogStep, Step
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.facts import ObservedJob, RunAdmission, RunFacts, WorkflowFacts
from taskforge.engine.naming import job_name
from taskforge.engine.planner import plan
from taskforge.engine.validation import workflow_status

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
SPEC = WorkflowSpec(steps=[Step(name="a", log=LogStep(message="hi"))])
# Valid for the models and the CRD, but a cycle: only the engine finds it (Valid=False).
CYCLE = WorkflowSpec(steps=[
    Step(name="a", depends_on=["b"], log=LogStep(message="a")),
    Step(name="b", depends_on=["a"], log=LogStep(message="b")),
])


@dataclass(frozen=True)
class Sample:
    name: str
    body: dict[str, Any]
    kstatus: str
    """What sigs.k8s.io/cli-utils v0.37.2's kstatus.Compute must say."""
    argocd: str
    """What docs/argocd's Lua health check must say."""


def _facts(status: WorkflowRunStatus | None, *, workflow: bool = True, cancel: bool = False,
           jobs: tuple[ObservedJob, ...] = (), admission: RunAdmission | None = None,
           spec: WorkflowSpec = SPEC, now: datetime = T0) -> RunFacts:
    return RunFacts(
        name="run1", namespace="ns", uid="uid-1", generation=1, created_at=T0,
        spec=WorkflowRunSpec(workflow_ref=WorkflowRef(name="wf"), cancel=cancel),
        status=status,
        workflow=WorkflowFacts("wf", 1, "wf-uid", spec) if workflow else None,
        jobs=jobs, now=now, admission=admission,
    )


def _job(state: str, exit_code: int | None, failure: str | None) -> ObservedJob:
    ok = state == "Succeeded"
    return ObservedJob(
        name=job_name("run1", "a", 1), step="a", attempt=1, state=state,  # type: ignore[arg-type]
        exit_code=exit_code, failure=failure,  # type: ignore[arg-type]
        termination_message=json.dumps({"ok": ok, "outputs": {}, **({} if ok else
                                                                    {"error": "boom"})}),
        finished_at=T0 + timedelta(seconds=2),
    )


def _run(name: str, status: WorkflowRunStatus, generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "taskforge.io/v1alpha1", "kind": "WorkflowRun",
        "metadata": {"name": name, "namespace": "ns", "generation": generation},
        "spec": {"workflowRef": {"name": "wf"}},
        "status": status.to_k8s(),
    }


def run_samples() -> list[Sample]:
    running = plan(_facts(None)).status
    later = T0 + timedelta(seconds=3)
    held = RunAdmission(allowed=False, reason="RateLimited", message="rate limited",
                        retry_after=5.0)
    return [
        Sample("pending-rate-limited", _run("pending-rate-limited",
               plan(_facts(None, admission=held)).status), "InProgress", "Progressing"),
        Sample("pending-workflow-not-found", _run("pending-workflow-not-found",
               plan(_facts(None, workflow=False)).status), "Failed", "Degraded"),
        Sample("pending-invalid-workflow", _run("pending-invalid-workflow",
               plan(_facts(None, spec=CYCLE)).status), "Failed", "Degraded"),
        Sample("running", _run("running", running), "InProgress", "Progressing"),
        Sample("succeeded", _run("succeeded", plan(_facts(
            running, jobs=(_job("Succeeded", 0, None),), now=later)).status),
            "Current", "Healthy"),
        Sample("failed", _run("failed", plan(_facts(
            running, jobs=(_job("Failed", 2, "Failed"),), now=later)).status),
            "Failed", "Degraded"),
        Sample("cancelled", _run("cancelled", plan(_facts(
            running, cancel=True, jobs=(_job("Active", None, None),), now=later)).status),
            "Failed", "Degraded"),
        # Edited after the operator last looked (generation 2, observedGeneration 1).
        Sample("running-spec-edited", _run("running-spec-edited", running, generation=2),
               "InProgress", "Progressing"),
        # kstatus's blind spot: no observedGeneration and no conditions yet is Current. It
        # lasts until the operator's first status write (milliseconds); the Lua check waits.
        Sample("new-no-status", {**_run("new", WorkflowRunStatus()), "status": {}},
               "Current", "Progressing"),
    ]


def _workflow(name: str, spec: WorkflowSpec, generation: int = 1,
              observed: int | None = None) -> dict[str, Any]:
    status = workflow_status(old_status={}, spec=spec, spec_error=None,
                             generation=observed or generation, runs=[], now=T0)
    return {
        "apiVersion": "taskforge.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": name, "namespace": "ns", "generation": generation},
        "spec": spec.to_k8s(), "status": status,
    }


def workflow_samples() -> list[Sample]:
    return [
        Sample("valid", _workflow("valid", SPEC), "Current", "Healthy"),
        Sample("invalid", _workflow("invalid", CYCLE), "Failed", "Degraded"),
        Sample("edited", _workflow("edited", SPEC, generation=2, observed=1),
               "InProgress", "Progressing"),
        Sample("new-no-status", {**_workflow("new", SPEC), "status": {}},
               "Current", "Progressing"),
    ]
