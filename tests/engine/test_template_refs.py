"""What templates name, checked before any run (engine/template_refs.py): table tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from enginekit import step, workflow
from taskforge.api.workflow import ParamSpec, Schedule, Triggers
from taskforge.engine.dag import build
from taskforge.engine.template_refs import step_template_problems, upstream
from taskforge.engine.validation import validate_workflow, workflow_status

P = [ParamSpec(name="who", default="x")]


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ("{{ params.who }} {{ run.name }} {{ trigger.body }}", None),
        ("{{ params['who'] }}", None),
        ("{% for i in range(3) %}{{ i }}{% endfor %} {{ dict(a=1) }}", None),
        ("{% set params = {'other': 1} %}{{ params.other }}", None),  # shadowed: not ours
        ("{{ steps.a.outputs.id }} {{ steps['a'].phase }}", None),
        ("{{ params.nope }}", "the template reads params.nope, which spec.params does not declare"),
        ("{{ params['no-pe'] }}",
         "the template reads params.no-pe, which spec.params does not declare"),
        ("{{ steps.zz.outputs }}", "the template reads steps.zz, which is not a step of this"
                                   " workflow"),
        ("{{ steps.c.outputs }}", "the template reads steps.c, which has not finished when step"
                                  " 'b' starts (add it to dependsOn)"),
        ("{{ steps.b.outputs }}", "the template reads steps.b, which has not finished when step"
                                  " 'b' starts (add it to dependsOn)"),
        ("{{ prams.who }}", "the template reads 'prams', which is not defined (templates see"
                            " params, steps, run and trigger)"),
        ("{{ 1 + }}", "template syntax error: unexpected 'end of print statement'"),
    ],
)
def test_step_b_templates(message: str, problem: str | None) -> None:
    spec = workflow(step("a"), step("b", "a", message=message), step("c", "b"), params=P)
    expected = [] if problem is None else [f"spec.steps[1].log.message: {problem}"]
    assert step_template_problems(spec, build(spec)) == expected


def test_transitive_ancestors_and_finally_steps_are_upstream() -> None:
    spec = workflow(step("a"), step("b", "a"), step("c", "b"), step("x"),
                    final=[step("f"), step("g", "f")])
    dag = build(spec)
    assert upstream(dag, "c") == {"a", "b"}
    assert upstream(dag, "x") == set()
    assert upstream(dag, "f") == {"a", "b", "c", "x"}
    assert upstream(dag, "g") == {"a", "b", "c", "x", "f"}


def test_a_finally_step_may_read_any_main_step() -> None:
    spec = workflow(step("a"), final=[step("f", message="{{ steps.a.phase }}")])
    assert step_template_problems(spec, build(spec)) == []


def test_references_to_secrets_are_not_templates() -> None:
    spec = workflow(step("a", message="plain"))
    assert step_template_problems(spec, build(spec)) == []


NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "timezone", "problem"),
    [
        ("*/5 * * * *", None, None),
        ("61 * * * *", None,
         "spec.triggers.schedule.cron: '61 * * * *': end of range (61) above maximum (59): 61"),
        ("0 * * * *", "Nowhere/City", "spec.triggers.schedule.timezone: unknown time zone"
                                      " Nowhere/City"),
    ],
)
def test_schedules_are_part_of_validity(cron: str, timezone: str | None,
                                        problem: str | None) -> None:
    spec = workflow(step("a")).model_copy(
        update={"triggers": Triggers(schedule=Schedule(cron=cron, timezone=timezone))})
    assert validate_workflow(spec) == ([] if problem is None else [problem])
    status = workflow_status(old_status={}, spec=spec, spec_error=None, generation=2, runs=[],
                             now=NOW)
    valid = next(c for c in status["conditions"] if c["type"] == "Valid")
    assert valid["status"] == ("True" if problem is None else "False")
    if problem:
        assert valid["reason"] == "InvalidWorkflow" and problem in valid["message"]
