"""Properties over random DAGs, driven by the pure cluster simulator.

Hypothesis draws a workflow (random dependencies on earlier steps, retry limits,
continueOnFailure, `when`, finally steps), how each attempt ends, in which order Jobs
finish, when status writes are lost (an operator crash between creating Jobs and patching
status) and whether the run is cancelled. Whatever it draws:

* no step starts before its dependencies are terminal (finally steps: all main steps too);
* every run reaches a terminal phase within a bounded number of reconciles;
* a (step, attempt) always has one Job name, and attempts are numbered 1, 2, 3... per step;
* the same facts give the same plan, and replanning a plan's own status repeats no event
  and no launch;
* a terminal run plans no new Job.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

from enginekit import Cluster, facts, fail, job, ok, retry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taskforge.api.run import TERMINAL_RUN_PHASES, TERMINAL_STEP_PHASES, WorkflowRunStatus
from taskforge.api.steps import LogStep, Step
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.actions import CreateJob, EmitEvent
from taskforge.engine.facts import ObservedJob
from taskforge.engine.naming import job_name
from taskforge.engine.planner import plan

ENDINGS = ["ok", "retryable", "permanent", "timeout", "pod"]


@st.composite
def workflows(draw: st.DrawFn) -> WorkflowSpec:
    n = draw(st.integers(1, 9))
    steps = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        steps.append(Step(
            name=f"s{i}",
            depends_on=[f"s{d}" for d in deps] or None,
            retry=retry(draw(st.integers(0, 2)), delay=draw(st.sampled_from(["0s", "3s"]))),
            continue_on_failure=draw(st.booleans()),
            when=draw(st.sampled_from([None, None, None, "true", "false"])),
            log=LogStep(message=f"step {i}"),
        ))
    finals = []
    for j in range(draw(st.integers(0, 2))):
        deps = draw(st.lists(st.sampled_from([s.name for s in steps] + [f"f{k}" for k in range(j)]),
                             max_size=2, unique=True))
        finals.append(Step(name=f"f{j}", depends_on=deps or None, log=LogStep(message="f")))
    timeout = draw(st.sampled_from([None, None, "20s"]))
    return WorkflowSpec(steps=steps, finally_steps=finals or None, timeout=timeout)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=workflows(), data=st.data())
def test_random_runs_are_safe_and_finish(spec: WorkflowSpec, data: st.DataObject) -> None:
    endings = data.draw(st.dictionaries(
        st.tuples(st.sampled_from([s.name for s in spec.all_steps]), st.integers(1, 3)),
        st.sampled_from(ENDINGS)))

    def outcome(step: str, attempt: int) -> ObservedJob:
        kind = endings.get((step, attempt), "ok")
        if kind == "ok":
            return ok(step, attempt, {"a": attempt})
        if kind == "retryable":
            return fail(step, attempt, 75)
        if kind == "permanent":
            return fail(step, attempt, 78)
        return job(step, attempt, "Failed", failure="TimedOut" if kind == "timeout"
                   else "PodFailure")

    cluster = Cluster(facts(spec), outcome=outcome)
    deps = {s.name: set(s.depends_on or ()) for s in spec.all_steps}
    main = {s.name for s in spec.steps}
    max_jobs = sum(3 for _ in spec.all_steps)
    cancel_at = data.draw(st.one_of(st.none(), st.integers(0, 12)))
    budget = 4 * max_jobs + 2 * len(deps) + 20
    lost_writes = 0
    for tick in range(budget):
        if cancel_at == tick:
            cluster.base = replace(cluster.base, spec=cluster.base.spec.model_copy(
                update={"cancel": True}))
        keep = lost_writes >= 5 or data.draw(st.integers(0, 9), label="write") > 0
        lost_writes += not keep
        before = cluster.facts()
        p = cluster.reconcile(keep_status=keep)
        assert plan(before) == p  # the same facts always give the same plan
        if keep:  # replanning the new status with the same Jobs repeats nothing
            replay = plan(replace(before, status=p.status))
            assert not any(isinstance(a, EmitEvent) for a in replay.actions)
            assert not any(isinstance(a, CreateJob) and a.is_new for a in replay.actions)
            assert replay.status == p.status, _diff(replay.status, p.status)
        steps = p.status.steps or {}
        for action in p.actions:
            if isinstance(action, CreateJob) and action.is_new:
                for dep in deps[action.step]:
                    assert steps[dep].phase in TERMINAL_STEP_PHASES, (action.step, dep)
                if action.step not in main:
                    assert all(steps[m].phase in TERMINAL_STEP_PHASES for m in main)
        if p.status.phase in TERMINAL_RUN_PHASES and keep:
            break
        active = [j for j in cluster.jobs.values() if j.state == "Active"]
        if active:
            chosen = data.draw(st.lists(st.sampled_from(active), min_size=1, unique=True),
                               label="finish")
            cluster.finish(only=[j.step for j in chosen])
        else:
            cluster.now += timedelta(seconds=p.requeue_after if p.requeue_after else 1)
    else:
        raise AssertionError(f"not terminal after {budget} reconciles")

    final = cluster.plans[-1]
    assert all(s.phase in TERMINAL_STEP_PHASES for s in (final.status.steps or {}).values())
    # One name per (step, attempt) and no attempt number skipped.
    seen: dict[str, set[int]] = {}
    for p in cluster.plans:
        for a in p.actions:
            if isinstance(a, CreateJob):
                assert cluster.names[(a.step, a.attempt)] == a.job_name
                seen.setdefault(a.step, set()).add(a.attempt)
    for name, attempts in seen.items():
        assert attempts == set(range(1, max(attempts) + 1)), (name, attempts)
        assert (final.status.steps or {})[name].attempts == max(attempts)
    # Terminal: nothing new is ever created again.
    again = cluster.reconcile()
    assert not any(isinstance(a, CreateJob) for a in again.actions)
    assert again.status == final.status


DNS = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


@given(
    run=st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,250}[a-z0-9])?", fullmatch=True),
    step=st.from_regex(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?", fullmatch=True),
    attempt=st.integers(1, 1000),
)
def test_job_names_are_dns_labels(run: str, step: str, attempt: int) -> None:
    name = job_name(run, step, attempt)
    assert len(name) <= 63 and re.match(DNS, name)
    assert name == job_name(run, step, attempt)
    assert name.endswith(f"-{attempt}")


def _diff(a: WorkflowRunStatus, b: WorkflowRunStatus) -> str:
    """Which fields differ, for a readable failure message."""
    da, db = a.model_dump(), b.model_dump()
    out = []
    for k in da:
        if da[k] != db[k]:
            if isinstance(da[k], dict):
                out += [f"{k}.{s}: {da[k].get(s)} != {db[k].get(s)}" for s in da[k]
                        if da[k].get(s) != db[k].get(s)]
            else:
                out.append(f"{k}: {da[k]} != {db[k]}")
    return "; ".join(out)
