"""First reconcile: finding, validating and pinning the workflow; params; reused steps."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from enginekit import (
    T0,
    Cluster,
    at,
    cond,
    created,
    creates,
    events,
    facts,
    ok,
    phases,
    st,
    step,
    workflow,
)
from taskforge.api.run import WorkflowRunStatus
from taskforge.api.workflow import ParamSpec, WorkflowSpec
from taskforge.engine.facts import WorkflowFacts
from taskforge.engine.planner import plan

SIMPLE = workflow(step("a"), step("b", "a"))


def test_missing_workflow_waits_pending_and_says_so_once() -> None:
    p = plan(facts(None))
    assert p.status.phase == "Pending"
    assert cond(p) == ("Unknown", "WorkflowNotFound")
    assert p.status.message == "workflow 'wf' not found in namespace 'ns'"
    assert p.requeue_after == 5.0
    assert events(p) == [("WorkflowNotFound", None)]
    again = plan(facts(None, status=p.status, now=at(5)))
    assert again.actions == () and again.status == p.status and again.requeue_after == 5.0


def test_workflow_appearing_later_starts_the_run() -> None:
    pending = plan(facts(None)).status
    p = plan(facts(SIMPLE, status=pending, now=at(7)))
    assert p.status.phase == "Running" and p.status.started_at == at(7)
    assert cond(p) == ("Unknown", "Running")
    assert created(p) == [("a", 1)]


def test_first_reconcile_pins_workflow_params_and_starts() -> None:
    spec = workflow(step("a"), step("b", "a"), params=[ParamSpec(name="x", default="d")])
    p = plan(facts(spec, generation=4))
    s = p.status
    assert s.phase == "Running" and s.started_at == T0 and s.observed_generation == 4
    assert s.workflow is not None
    assert (s.workflow.name, s.workflow.generation, s.workflow.uid) == ("wf", 3, "wf-uid")
    assert s.workflow_spec == spec and s.params == {"x": "d"}
    assert s.progress == "0/2" and phases(p) == {"a": "Running", "b": "Pending"}
    assert cond(p) == ("Unknown", "Running")
    assert p.status.conditions is not None and p.status.conditions[0].observed_generation == 4


def test_editing_the_workflow_does_not_change_a_running_run() -> None:
    first = plan(facts(SIMPLE))
    edited = workflow(step("a", message="changed"), step("b", "a"), step("new", "b"))
    base = facts(edited, status=first.status, jobs=[ok("a")], now=at(1))
    p = plan(base)
    assert p.status.workflow_spec == SIMPLE and "new" not in (p.status.steps or {})
    assert created(p) == [("b", 1)]
    assert p.status.workflow is not None and p.status.workflow.generation == 3


def test_inline_workflow_is_pinned_the_same_way() -> None:
    p = plan(facts(SIMPLE, inline=True))
    assert p.status.workflow is None and p.status.workflow_spec == SIMPLE
    assert created(p) == [("a", 1)]
    assert "taskforge.io/workflow" not in p.actions[0].labels  # type: ignore[union-attr]


def test_workflow_facts_for_another_name_are_not_used() -> None:
    f = facts(SIMPLE)
    wrong = WorkflowFacts("other", 1, None, SIMPLE)
    p = plan(replace(f, workflow=wrong))
    assert p.status.phase == "Pending" and cond(p) == ("Unknown", "WorkflowNotFound")


PARAMS = [
    ParamSpec(name="env", required=True),
    ParamSpec(name="count", type="integer", default=2),
]


@pytest.mark.parametrize(
    ("given", "reason", "message"),
    [
        ({}, "InvalidParams", "spec.params.env: required param is missing"),
        ({"env": "x", "count": "2"}, "InvalidParams",
         "spec.params.count: expects integer, got string"),
        ({"env": "x", "colour": "red"}, "InvalidParams",
         "spec.params.colour: unknown param 'colour' (declared: count, env)"),
    ],
)
def test_invalid_params_fail_the_run_naming_the_field(
    given: dict[str, Any], reason: str, message: str
) -> None:
    p = plan(facts(workflow(step("a"), params=PARAMS), params=given))
    assert p.status.phase == "Failed" and cond(p) == ("False", reason)
    assert p.status.message == message
    assert p.status.finished_at == T0 and p.status.duration is not None
    assert created(p) == [] and events(p) == [(reason, None)]
    assert p.status.workflow is not None and p.status.workflow_spec is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (workflow(step("a", "b"), step("b", "a")), "spec.steps: dependency cycle: a -> b -> a"),
        (workflow(step("a"), step("b", "c"), step("c", "d"), step("d", "b")),
         "spec.steps: dependency cycle: b -> c -> d -> b"),
        (workflow(step("a"), step("b", "a", when="steps.a.phase ==")),
         "spec.steps[1].when: invalid CEL expression"),
        (workflow(step("a"), params=[ParamSpec(name="n", type="integer", default="x")]),
         "spec.params[0].default: param 'n' expects integer, got string"),
    ],
    ids=["cycle", "long cycle", "bad when", "bad default"],
)
def test_invalid_inline_workflows_fail_the_run(spec: WorkflowSpec, message: str) -> None:
    p = plan(facts(spec, inline=True))
    assert p.status.phase == "Failed" and cond(p) == ("False", "InvalidWorkflow")
    assert p.status.message is not None and p.status.message.startswith(message)
    assert created(p) == []
    assert plan(facts(spec, status=p.status, now=at(9), inline=True)).status is p.status


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (workflow(step("a", "b"), step("b", "a")), "spec.steps: dependency cycle: a -> b -> a"),
        (workflow(step("a", message="{{ params.nope }}")),
         "spec.steps[0].log.message: the template reads params.nope, which spec.params does"
         " not declare"),
        (workflow(step("a", message="{{ steps.b.outputs.x }}"), step("b")),
         "spec.steps[0].log.message: the template reads steps.b, which has not finished when"
         " step 'a' starts (add it to dependsOn)"),
    ],
    ids=["cycle", "undeclared param", "step not upstream"],
)
def test_runs_of_an_invalid_workflow_wait_pending_until_it_is_fixed(
    spec: WorkflowSpec, message: str
) -> None:
    p = plan(facts(spec))
    assert p.status.phase == "Pending" and cond(p) == ("Unknown", "InvalidWorkflow")
    assert p.status.message == f"workflow 'wf' is invalid: {message}"
    assert created(p) == [] and events(p) == [("InvalidWorkflow", None)]
    again = plan(facts(spec, status=p.status, now=at(9)))
    assert again.actions == () and again.requeue_after is None
    fixed = plan(facts(SIMPLE, status=p.status, now=at(20)))
    assert fixed.status.phase == "Running" and created(fixed) == [("a", 1)]


def test_reusing_an_unknown_step_is_invalid() -> None:
    p = plan(facts(SIMPLE, reuse={"zzz": {}}))
    assert cond(p) == ("False", "InvalidWorkflow")
    assert p.status.message == "spec.reuseSteps[0].name: the workflow has no step 'zzz'"


def test_reused_steps_succeed_at_once_and_feed_templates() -> None:
    spec = workflow(step("a"), step("b", "a", message="id={{ steps.a.outputs.id }}"))
    p = plan(facts(spec, reuse={"a": {"id": 41}}))
    a = st(p, "a")
    assert (a.phase, a.reused, a.outputs, a.attempts, a.job_name) == (
        "Succeeded", True, {"id": 41}, 0, None)
    [create] = creates(p)
    assert create.config["message"] == "id=41"
    assert p.status.progress == "1/2"


def test_all_steps_reused_finishes_in_one_reconcile() -> None:
    p = plan(facts(SIMPLE, reuse={"a": {}, "b": {"x": 1}}))
    assert p.status.phase == "Succeeded" and created(p) == []
    assert events(p) == [("RunSucceeded", None)]


def test_status_round_trips_through_the_wire_form() -> None:
    spec = workflow(step("a"), step("b", "a"), final=[step("f")], timeout="1h")
    done = Cluster(facts(spec), outcome=lambda s, n: ok(s, n, {"v": [1, "x"]})).run()
    wire = done.status.to_k8s()
    assert WorkflowRunStatus.model_validate(wire) == done.status


def test_cancelling_a_run_still_waiting_for_its_workflow() -> None:
    pending = plan(facts(None)).status
    p = plan(facts(None, status=pending, now=at(3), cancel=True))
    assert p.status.phase == "Cancelled" and cond(p) == ("False", "Cancelled")
    assert p.status.message == "cancelled before it started" and p.requeue_after is None
    assert events(p) == [("Cancelled", None)]
