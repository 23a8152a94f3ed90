"""Workflow steps (engine/subflow.py): a child run per step, ended with it; table tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from enginekit import T0, facts, ok, phases, st, step, workflow
from taskforge.api.steps import Step, WorkflowCall
from taskforge.engine.actions import CancelRun, CreateRun, Plan
from taskforge.engine.facts import ObservedChild, RunFacts
from taskforge.engine.planner import plan
from taskforge.engine.subflow import (
    LABEL_PARENT_RUN,
    LABEL_PARENT_STEP,
    MAX_DEPTH,
    child_run_name,
    parse_chain,
)


def call(name: str, workflow_name: str = "child", *deps: str, **params: Any) -> Step:
    return Step(name=name, depends_on=list(deps) or None,
                workflow=WorkflowCall(name=workflow_name, params=params or None))


def runs(p: Plan) -> list[CreateRun]:
    return [a for a in p.actions if isinstance(a, CreateRun)]


def child(name: str, phase: str | None = None, *, owned: bool = True,
          outputs: dict[str, Any] | None = None, message: str | None = None) -> ObservedChild:
    return ObservedChild(name=name, owned=owned, phase=phase, outputs=outputs, message=message)


def test_child_run_is_created_with_rendered_params_labels_and_chain() -> None:
    spec = workflow(step("a"), call("sub", "child", "a", who="{{ steps.a.outputs.v }}", n=3))
    first = plan(facts(spec))
    second = plan(facts(spec, first.status, [ok("a", 1, {"v": "bob"})]))
    [create] = runs(second)
    assert create.run_name == child_run_name("run1", "sub")
    assert create.workflow == "child"
    assert create.params == {"who": "bob", "n": 3}
    assert create.labels == {LABEL_PARENT_RUN: "run1", LABEL_PARENT_STEP: "sub"}
    assert create.lineage == ("wf",)
    sub = st(second, "sub")
    assert sub.phase == "Running" and sub.child_run == create.run_name


def test_names_are_deterministic_and_distinct() -> None:
    assert child_run_name("a-b", "c") != child_run_name("a", "b-c")
    assert child_run_name("r", "s") == child_run_name("r", "s")
    long = child_run_name("x" * 253, "step")
    assert len(long) <= 253 and long.endswith(child_run_name("x" * 253, "step")[-8:])


def _running(spec: Any) -> tuple[RunFacts, Plan]:
    base = facts(spec)
    p = plan(base)
    return replace(base, status=p.status), p


@pytest.mark.parametrize(
    ("observed", "phase", "message", "outputs"),
    [
        (None, "Running", None, None),
        ("Running", "Running", None, None),
        ("Succeeded", "Succeeded", "succeeded", {"total": "42"}),
        ("Failed", "Failed", "failed: step 'x' failed: boom", None),
        ("Cancelled", "Failed", "cancelled", None),
    ],
)
def test_step_ends_with_its_child(observed: str | None, phase: str, message: str | None,
                                  outputs: dict[str, str] | None) -> None:
    spec = workflow(call("sub"), step("after", "sub"))
    base, _ = _running(spec)
    name = child_run_name("run1", "sub")
    kids = {} if observed is None else {
        "sub": child(name, observed, outputs={"total": "42"},
                     message="step 'x' failed: boom" if observed == "Failed" else None)}
    p = plan(replace(base, children=kids))
    sub = st(p, "sub")
    assert sub.phase == phase
    if message is not None:
        assert message in (sub.message or "")
    assert sub.outputs == outputs
    if observed is None:  # not seen yet: asked for again, same name
        assert [r.run_name for r in runs(p)] == [name]
    else:
        assert not runs(p)
    if phase == "Succeeded":
        assert phases(p)["after"] == "Running"
        assert p.status.phase == "Running"
    if phase == "Failed":
        assert phases(p)["after"] == "Skipped" and p.status.phase == "Failed"


def test_a_run_of_that_name_not_owned_is_never_adopted() -> None:
    base, _ = _running(workflow(call("sub")))
    name = child_run_name("run1", "sub")
    p = plan(replace(base, children={"sub": child(name, "Succeeded", owned=False)}))
    assert st(p, "sub").phase == "Failed"
    assert "exists but was not created by this step" in (st(p, "sub").message or "")


def test_cancelling_the_parent_cancels_the_child() -> None:
    base, _ = _running(workflow(call("sub")))
    name = child_run_name("run1", "sub")
    cancelled = replace(base, spec=base.spec.model_copy(update={"cancel": True}),
                        children={"sub": child(name, "Running")})
    p = plan(cancelled)
    assert [a.run_name for a in p.actions if isinstance(a, CancelRun)] == [name]
    assert st(p, "sub").phase == "Cancelled" and p.status.phase == "Cancelled"


@pytest.mark.parametrize(
    ("lineage", "target", "error"),
    [
        ((), "wf", "workflow cycle: wf -> wf"),
        (("a", "b"), "a", "workflow cycle: a -> b -> wf -> a"),
        (("a", "b", "c", "d", "e"), "z",
         f"sub-workflow depth limit {MAX_DEPTH} reached: a -> b -> c -> d -> e -> wf -> z"),
        (("a", "b", "c", "d"), "z", None),
    ],
)
def test_cycles_and_depth_fail_the_step_before_any_child(
        lineage: tuple[str, ...], target: str, error: str | None) -> None:
    base = replace(facts(workflow(call("sub", target))), lineage=lineage)
    p = plan(base)
    if error is None:
        assert runs(p) and runs(p)[0].lineage == (*lineage, "wf")
        return
    assert not runs(p)
    assert st(p, "sub").phase == "Failed" and p.status.phase == "Failed"
    assert error in (st(p, "sub").message or "")


@pytest.mark.parametrize(
    ("value", "chain"),
    [(None, ()), ('["a","b"]', ("a", "b")), ("nope", ()), ('{"a": 1}', ()),
     ('["a","b","c","d","e","f","g","h"]', ())],
)
def test_parse_chain(value: str | None, chain: tuple[str, ...]) -> None:
    assert parse_chain(value) == chain


def test_params_templates_are_checked_before_the_run_and_fail_the_step_at_it() -> None:
    p = plan(facts(workflow(call("sub", who="{{ steps.zz.outputs.x }}"))))
    assert p.status.phase == "Pending" and "workflow.params.who" in (p.status.message or "")
    spec = workflow(step("a"), call("sub", "child", "a", who="{{ steps.a.outputs.nope }}"))
    first = plan(facts(spec))
    second = plan(facts(spec, first.status, [ok("a", 1, {"v": 1})]))
    assert not runs(second)
    sub = st(second, "sub")
    assert sub.phase == "Failed" and "steps.a.outputs.nope is absent" in (sub.message or "")


def test_model_rejects_workflow_with_for_each() -> None:
    with pytest.raises(ValueError, match="a workflow step cannot have forEach"):
        Step.model_validate({"name": "s", "workflow": {"name": "w"},
                             "forEach": {"items": [1]}})


def test_time_is_a_parameter() -> None:
    base, _ = _running(workflow(call("sub")))
    name = child_run_name("run1", "sub")
    a = plan(replace(base, children={"sub": child(name, "Succeeded")}))
    b = plan(replace(base, children={"sub": child(name, "Succeeded")}))
    assert a == b and base.now == T0


@pytest.mark.parametrize(
    ("last_phase", "phase", "message", "outputs"),
    [
        (None, "Failed", "was deleted before it finished", None),
        ("Pending", "Failed", "was deleted before it finished", None),
        ("Running", "Failed", "was deleted before it finished", None),
        ("Succeeded", "Succeeded", "succeeded", {"total": "42"}),
        ("Failed", "Failed", "failed: boom", None),
    ],
)
def test_a_child_deleted_by_hand_is_never_created_again(
    last_phase: str | None, phase: str, message: str, outputs: dict[str, str] | None
) -> None:
    """Deleted while running: the step fails naming the child (no second execution);
    deleted after it finished: the step ends as the child did."""
    base, _ = _running(workflow(call("sub"), step("after", "sub")))
    name = child_run_name("run1", "sub")
    gone = replace(child(name, last_phase, outputs={"total": "42"},
                         message="boom" if last_phase == "Failed" else None), deleted=True)
    p = plan(replace(base, children={"sub": gone}))
    sub = st(p, "sub")
    assert not runs(p)
    assert sub.phase == phase and message in (sub.message or ""), sub.message
    assert sub.outputs == outputs
    if phase == "Failed":
        assert f"child run {name}" in (sub.message or "") or last_phase == "Failed"
        assert phases(p)["after"] == "Skipped" and p.status.phase == "Failed"
    # the same facts again decide the same
    again = plan(replace(base, children={"sub": gone}))
    assert again.status == p.status
