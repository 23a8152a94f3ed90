"""What a reconcile did, for metrics (engine/telemetry.py), read off real plan() sequences.

Each test plans a run step by step as the operator would (the status one plan wrote is the
next plan's input) and checks what `run_changes` says happened between the two statuses.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from enginekit import T0, at, facts, fail, job, ok, result_json, retry, step, workflow
from taskforge.api.run import StepStatus, WorkflowRunStatus
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.facts import ObservedJob, RunAdmission
from taskforge.engine.planner import plan
from taskforge.engine.telemetry import AttemptEnded, RunChanges, outcome, run_changes


def _changes(
    spec: WorkflowSpec, rounds: list[tuple[float, list[ObservedJob]]]
) -> list[RunChanges]:
    """Plan once per (now, jobs seen); the changes of each plan against the status before."""
    status: WorkflowRunStatus | None = None
    out = []
    for now, jobs in rounds:
        new = plan(facts(spec, status, jobs, now=at(now))).status
        out.append(run_changes(status, new, trigger="manual", created_at=T0))
        status = new
    return out


def test_one_step_run_start_first_job_attempt_and_end() -> None:
    done = job("a", 1, "Succeeded", message=result_json(True), finished=at(2))
    launch, end = _changes(workflow(step("a")), [(1.5, []), (2.25, [done])])
    assert launch.started and launch.first_job_seconds == 1.5
    assert launch.attempts == [] and launch.finished is None and launch.handoffs == []
    assert not end.started and end.first_job_seconds is None
    assert end.attempts == [AttemptEnded("a", 1, "log", "succeeded", 0.75)]
    assert end.steps_finished == [("log", "Succeeded")]
    assert end.finished == "Succeeded" and end.run_seconds == 0.75


def test_handoff_is_from_the_dependency_end_to_the_next_launch() -> None:
    a_done = job("a", 1, "Succeeded", message=result_json(True), finished=at(3))
    spec = workflow(step("a"), step("b", "a"))
    first, second = _changes(spec, [(1, []), (3.02, [a_done])])
    assert first.handoffs == [] and first.first_job_seconds == 1
    # a ended at 3.02 (observed within the kubelet's second), b launched in the same plan.
    assert second.handoffs == [0.0]
    assert second.first_job_seconds is None  # not the run's first Job
    assert [a.outcome for a in second.attempts] == ["succeeded"]


def test_a_retried_step_counts_each_attempt_with_its_outcome() -> None:
    spec = workflow(step("a", retry=retry(2, "1s")))
    rounds = [(0, []), (0.5, [fail("a", 1, finished=at(0))]),
              (1.6, [fail("a", 1, finished=at(0))]),
              (2.0, [fail("a", 1, finished=at(0)), ok("a", 2)])]
    changes = _changes(spec, rounds)
    ended = [a for c in changes for a in c.attempts]
    assert [(a.attempt, a.outcome) for a in ended] == [(1, "retryable"), (2, "succeeded")]
    assert ended[0].seconds == 0.5 and ended[1].seconds == pytest.approx(0.4)
    assert changes[2].handoffs == []  # a retry is not a hand-off
    assert sum(len(c.steps_finished) for c in changes) == 1


@pytest.mark.parametrize(("code", "expected"), [(78, "permanent"), (75, "retryable")])
def test_a_failed_run_tells_permanent_from_exhausted(code: int, expected: str) -> None:
    spec = workflow(step("a"))
    _, end = _changes(spec, [(0, []), (1, [fail("a", 1, code=code, finished=at(1))])])
    assert [a.outcome for a in end.attempts] == [expected]
    assert end.finished == "Failed" and end.steps_finished == [("log", "Failed")]
    assert end.dead_letter_recorded and not end.dead_letter_shipped


def test_a_timeout_is_its_own_outcome() -> None:
    timed_out = job("a", 1, "Failed", failure="TimedOut", finished=at(1))
    _, end = _changes(workflow(step("a")), [(0, []), (1, [timed_out])])
    assert [a.outcome for a in end.attempts] == ["timeout"]


def test_an_unchanged_status_reports_nothing() -> None:
    status = plan(facts(workflow(step("a")), None, [], now=at(1))).status
    assert run_changes(status, status, trigger="manual", created_at=T0) == RunChanges()
    again = status.model_copy()
    assert run_changes(status, again, trigger="webhook", created_at=T0) == RunChanges(
        trigger="webhook")


@pytest.mark.parametrize(("st", "expected"), [
    (StepStatus(phase="Succeeded", exit_code=0), "succeeded"),
    (StepStatus(phase="Retrying", failure="Failed", exit_code=75), "retryable"),
    (StepStatus(phase="Retrying", failure="TimedOut"), "timeout"),
    (StepStatus(phase="Failed", failure="Failed", exit_code=78), "permanent"),
    (StepStatus(phase="Failed", failure="TemplateLimit"), "permanent"),
    (StepStatus(phase="Failed", failure="PodFailure"), "retryable"),
    (StepStatus(phase="Cancelled"), "cancelled"),
])
def test_outcome(st: StepStatus, expected: str) -> None:
    assert outcome(st) == expected


def test_a_run_held_by_its_limits_counts_one_wait_until_it_starts() -> None:
    spec = workflow(step("a"))
    held = RunAdmission(False, "RateLimited", "over the rate", retry_after=5)
    first = plan(replace(facts(spec, None, [], now=at(0)), admission=held)).status
    again = plan(replace(facts(spec, first, [], now=at(1)), admission=held)).status
    started = plan(facts(spec, again, [], now=at(6))).status
    waits = [run_changes(o, n, trigger="manual", created_at=T0).waits
             for o, n in ((None, first), (first, again), (again, started))]
    assert waits == [["run_rate"], [], []]
    assert run_changes(again, started, trigger="manual", created_at=T0).first_job_seconds == 6
