"""Replanning: same facts give the same plan; a half-applied plan gives the missing actions;
events are emitted once per transition; terminal runs are left alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from enginekit import (
    T0,
    Cluster,
    at,
    created,
    creates,
    deletes,
    events,
    facts,
    fail,
    job,
    ok,
    phases,
    retry,
    st,
    step,
    workflow,
)
from taskforge.api.run import StepStatus
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.actions import EmitEvent
from taskforge.engine.facts import RunFacts
from taskforge.engine.naming import job_name
from taskforge.engine.planner import plan

SPEC = workflow(step("a"), step("b", "a", retry=retry(2)), step("c", "a"),
                step("d", "b", "c", message="{{ steps.b.outputs.v }}"), final=[step("f")],
                timeout="1h")


def snapshots() -> list[RunFacts]:
    """The facts of every reconcile of a run that retries once and then succeeds."""

    def outcome(s: str, n: int):  # type: ignore[no-untyped-def]
        return fail(s, n) if (s, n) == ("b", 1) else ok(s, n, {"v": s})

    cluster = Cluster(facts(SPEC), outcome=outcome)
    seen = []
    for _ in range(20):
        seen.append(cluster.facts())
        p = cluster.reconcile()
        if p.status.phase == "Succeeded":
            break
        if not cluster.finish():
            cluster.now += timedelta(seconds=p.requeue_after or 1)
    return seen


@pytest.mark.parametrize("index", range(8))
def test_planning_twice_on_the_same_facts_gives_the_same_plan(index: int) -> None:
    all_facts = snapshots()
    f = all_facts[min(index, len(all_facts) - 1)]
    assert plan(f) == plan(f)


@pytest.mark.parametrize("index", range(8))
def test_replanning_on_the_new_status_repeats_no_event_and_no_new_attempt(index: int) -> None:
    all_facts = snapshots()
    f = all_facts[min(index, len(all_facts) - 1)]
    first = plan(f)
    second = plan(replace(f, status=first.status))
    assert events(second) == []
    # Every CreateJob repeated is the same attempt with the same name (idempotent).
    assert {(c.step, c.attempt, c.job_name) for c in creates(second)} <= {
        (c.step, c.attempt, c.job_name) for c in creates(first)}
    assert all(not c.is_new for c in creates(second))
    assert second.status == first.status


def test_running_step_without_observed_job_gets_the_same_create_again() -> None:
    first = plan(facts(SPEC))
    [create] = creates(first)
    again = plan(facts(SPEC, first.status, now=at(3)))
    [repeat] = creates(again)
    assert (repeat.step, repeat.attempt, repeat.job_name, repeat.config) == (
        create.step, create.attempt, create.job_name, create.config)
    assert create.is_new and not repeat.is_new
    assert events(again) == [] and again.status == first.status


def test_half_finished_status_gives_exactly_the_missing_actions() -> None:
    """The operator died after writing status but before creating some Jobs."""
    base = plan(facts(SPEC))
    steps = dict(base.status.steps or {})
    steps["a"] = StepStatus(phase="Succeeded", attempts=1, job_name="run1-a-1", exit_code=0)
    for name in ("b", "c"):
        steps[name] = StepStatus(phase="Running", attempts=1, job_name=job_name("run1", name, 1),
                                 started_at=T0)
    status = base.status.model_copy(update={"steps": steps})
    p = plan(facts(SPEC, status, [ok("a"), job("b")], now=at(1)))
    assert created(p) == [("c", 1)] and events(p) == [] and deletes(p) == []


def test_lost_status_write_repeats_the_same_job_names() -> None:
    """Jobs were created but the status patch was lost: the replan names the same Jobs."""
    first = plan(facts(SPEC))
    lost = plan(facts(SPEC, first.status, [ok("a")], now=at(1)))
    not_seen_yet = plan(facts(SPEC, first.status, [ok("a")], now=at(2)))
    assert created(lost) == created(not_seen_yet) == [("b", 1), ("c", 1)]
    assert [c.job_name for c in creates(lost)] == [c.job_name for c in creates(not_seen_yet)]


def test_jobs_the_status_does_not_record_are_adopted() -> None:
    """Once the lost Jobs are observed, the replan adopts them instead of launching again."""
    first = plan(facts(SPEC))
    lost = plan(facts(SPEC, first.status, [ok("a")], now=at(1)))
    replay = plan(facts(SPEC, first.status, [ok("a"), job("b"), ok("c")], now=at(2)))
    assert created(replay) == [] and deletes(replay) == []
    assert (st(replay, "b").phase, st(replay, "b").job_name) == (
        "Running", creates(lost)[0].job_name)
    assert st(replay, "c").phase == "Succeeded" and st(replay, "c").attempts == 1


def test_a_retry_is_never_launched_under_a_new_attempt_twice() -> None:
    spec = workflow(step("a", retry=retry(3, delay="0s")))
    first = plan(facts(spec))
    p = plan(facts(spec, first.status, [fail("a")], now=at(1)))
    assert created(p) == [("a", 2)]
    again = plan(facts(spec, p.status, [fail("a")], now=at(2)))
    assert created(again) == [("a", 2)] and st(again, "a").attempts == 2


@pytest.mark.parametrize(("step_events", "expected"), [
    # the default: retries, failures and the run's end; a step's start and success are in
    # status only (each Event is an API write)
    ("default", [("StepRetrying", "a"), ("StepFailed", "a"), ("RunFailed", None)]),
    ("all", [
        ("StepStarted", "a"), ("StepSkipped", "s"),
        ("StepRetrying", "a"), ("StepStarted", "a"),
        ("StepFailed", "a"), ("StepSkipped", "b"), ("StepStarted", "f"),
        ("StepSucceeded", "f"), ("RunFailed", None),
    ]),
])
def test_events_follow_transitions(
    step_events: str, expected: list[tuple[str, str | None]]
) -> None:
    spec = workflow(step("a", retry=retry(1, delay="0s")), step("b", "a"),
                    step("s", when="false"), final=[step("f")], step_events=step_events)
    c = Cluster(facts(spec), outcome=lambda s, n: fail(s, n) if s == "a" else ok(s, n))
    c.run()
    seen = [e for p in c.plans for e in events(p)]
    assert seen == expected
    kinds = {(e.reason, e.type) for q in c.plans for e in q.actions if isinstance(e, EmitEvent)}
    assert ("StepFailed", "Warning") in kinds
    assert (("StepStarted", "Normal") in kinds) == (step_events == "all")


def test_a_successful_chain_posts_one_event_by_default() -> None:
    """At most one Event per step by default: here one for the whole 3-step run, its end."""
    spec = workflow(step("a"), step("b", "a"), step("c", "b"))
    c = Cluster(facts(spec), outcome=ok)
    c.run()
    assert [e for p in c.plans for e in events(p)] == [("RunSucceeded", None)]


def test_idle_replan_keeps_status_equal_and_does_nothing() -> None:
    first = plan(facts(SPEC))
    observed = [job("a")]
    p1 = plan(facts(SPEC, first.status, observed, now=at(1)))
    p2 = plan(facts(SPEC, p1.status, observed, now=at(2)))
    assert p2.actions == () and p2.status == p1.status
    assert p2.requeue_after == pytest.approx(3600 - 2)


def test_terminal_run_only_deletes_leftover_active_jobs() -> None:
    final = Cluster(facts(workflow(step("a")))).run()
    p = plan(facts(workflow(step("a")), final.status, [job("a", 1), job("a", 9)], now=at(99)))
    # Attempt 1's end is recorded (its "active" Job is a lagging cache); attempt 9 is unknown.
    assert deletes(p) == ["run1-a-9"] and p.status is final.status
    assert p.requeue_after is None and created(p) == []


def test_a_recorded_failed_attempt_that_looks_active_is_not_deleted() -> None:
    """Restart race: the Job of a failed attempt is listed before its pod; the status already
    says the attempt failed and a retry waits, so the Job must be kept (its logs too)."""
    spec = workflow(step("a", retry=retry(2, "5s", kind="fixed")))
    first = plan(facts(spec))
    failed_once = plan(facts(spec, first.status, [fail("a")], now=at(1)))
    assert phases(failed_once) == {"a": "Retrying"}
    p = plan(facts(spec, failed_once.status, [job("a", 1)], now=at(2)))
    assert deletes(p) == [] and created(p) == []


def test_orphan_active_jobs_of_a_live_run_are_deleted() -> None:
    spec = workflow(step("a"), step("b", "a"))
    first = plan(facts(spec))
    stray = job("b", 7)
    p = plan(facts(spec, first.status, [job("a"), stray], now=at(1)))
    assert deletes(p) == [stray.name]
    assert phases(p) == {"a": "Running", "b": "Pending"}


def test_progress_counts_terminal_steps() -> None:
    spec: WorkflowSpec = workflow(step("a"), step("b"), step("c", "a"), step("d", "c"),
                                  final=[step("f")])
    first = plan(facts(spec))
    p = plan(facts(spec, first.status, [ok("a"), fail("b", code=78)], now=at(1)))
    assert p.status.progress == "4/5"  # a ok, b failed, c and d skipped (the run is failing)
    assert phases(p)["f"] == "Running"


def test_observed_generation_follows_the_run() -> None:
    first = plan(facts(SPEC, generation=1))
    p = plan(facts(SPEC, first.status, [job("a")], now=at(1), generation=2))
    assert p.status.observed_generation == 2
    conds = p.status.conditions or []
    assert conds[0].observed_generation == 2 and conds[0].last_transition_time == T0


def test_a_wide_fan_out_is_launched_in_batches() -> None:
    spec = workflow(step("root"), *[step(f"w{i}", "root") for i in range(250)])
    c = Cluster(facts(spec))
    c.reconcile()
    c.finish()
    batches = []
    for _ in range(3):
        p = c.reconcile()
        batches.append(len(creates(p)))
        assert p.requeue_after == (0.0 if len(batches) < 3 else None)
    assert batches == [100, 100, 50]
    assert [a for a, _ in created(c.plans[1])][:2] == ["w0", "w1"]
    assert c.run().status.phase == "Succeeded"
