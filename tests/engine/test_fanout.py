"""forEach fan-out: table tests over whole runs driven by the pure cluster, and a few plans.

Each row is a workflow with a forEach step, how each item's attempts end, and what the step
and the run must end as.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from enginekit import (
    Cluster,
    at,
    creates,
    deletes,
    facts,
    fail,
    ok,
    phases,
    retry,
    st,
    step,
    workflow,
)
from taskforge.api.run import WorkflowRunStatus
from taskforge.api.steps import ForEach, LogStep, ScriptStep, Step
from taskforge.engine.dag import build
from taskforge.engine.facts import ObservedJob
from taskforge.engine.naming import LABEL_ITEM, item_job_name
from taskforge.engine.planner import plan
from taskforge.engine.template_refs import step_template_problems


def fan(name: str, items: Any, *deps: str, parallel: int = 10, message: str = "{{ item }}",
        **kw: Any) -> Step:
    return Step(name=name, depends_on=list(deps) or None,
                for_each=ForEach(items=items, max_parallel=parallel),
                log=LogStep(message=message), **kw)


def items_ending(bad: dict[int, int] | None = None, code: int = 75):
    """Item i fails its first bad[i] attempts (code), then succeeds with {"n": i}."""
    bad = bad or {}

    def outcome(s: str, index: int, attempt: int) -> ObservedJob:
        if attempt <= bad.get(index, 0):
            return fail(s, attempt, code)
        return ok(s, attempt, {"n": index, "attempt": attempt})

    return outcome


@dataclass(frozen=True)
class Case:
    id: str
    steps: list[Step]
    run_phase: str
    step_phase: str
    bad: dict[int, int] = field(default_factory=dict)
    code: int = 75
    counts: dict[str, int] = field(default_factory=dict)
    outputs: list[Any] | None = None
    message: str = ""


CASES = [
    Case("all succeed, outputs in order", [fan("f", [10, 20, 30])], "Succeeded", "Succeeded",
         counts={"succeeded": 3}, outputs=[{"n": 0, "attempt": 1}, {"n": 1, "attempt": 1},
                                            {"n": 2, "attempt": 1}]),
    Case("empty list", [fan("f", [])], "Succeeded", "Succeeded", counts={"total": 0},
         outputs=[]),
    Case("retried item succeeds", [fan("f", ["a", "b"], retry=retry(2, "1s"))], "Succeeded",
         "Succeeded", bad={1: 2}, counts={"succeeded": 2}),
    Case("permanent item failure fails step and run",
         [fan("f", list(range(5)), parallel=1), step("after", "f")], "Failed", "Failed",
         bad={1: 9}, code=78, counts={"succeeded": 1, "failed": 1, "cancelled": 3},
         message="1 of 5 items failed; item 1:"),
    Case("continueOnFailure: every item runs, step succeeds",
         [fan("f", list(range(4)), parallel=2, continue_on_failure=True), step("after", "f")],
         "Succeeded", "Succeeded", bad={0: 9, 2: 9}, code=78,
         counts={"succeeded": 2, "failed": 2}, message="2 failed (continueOnFailure)"),
    Case("items from a previous step's outputs",
         [step("list"), fan("f", "{{ steps.list.outputs.names | tojson }}", "list")],
         "Succeeded", "Succeeded", counts={"succeeded": 2}),
    Case("items template not a list", [fan("f", "{{ params }}")], "Failed", "Failed",
         message="forEach.items must render to a JSON list"),
]


def run_case(case: Case) -> Any:
    def outcome(s: str, attempt: int) -> ObservedJob:
        return ok(s, attempt, {"names": ["x", "y"]})

    cluster = Cluster(facts(workflow(*case.steps)), outcome=outcome,
                      item_outcome=items_ending(case.bad, case.code))
    return cluster, cluster.run()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fanout_runs(case: Case) -> None:
    _, p = run_case(case)
    assert p.status.phase == case.run_phase
    f = st(p, "f")
    assert f.phase == case.step_phase, f.message
    assert case.message in (f.message or "")
    if f.items is None:  # failed before any item: no items status
        assert not case.counts
        return
    for key, value in case.counts.items():
        assert getattr(f.items, key) == value, (key, f.items)
    if case.outputs is not None:
        assert f.items.outputs == case.outputs
    assert case.message in (f.message or "")
    if "after" in phases(p):
        assert phases(p)["after"] == ("Skipped" if case.step_phase == "Failed" else "Succeeded")


def test_item_sees_item_and_index_and_jobs_are_labelled() -> None:
    spec = workflow(fan("f", [{"id": "a"}, {"id": "b"}], message="{{ index }}:{{ item.id }}"))
    p = plan(facts(spec))
    made = creates(p)
    assert [a.config["message"] for a in made] == ["0:a", "1:b"]
    assert [a.item for a in made] == [0, 1]
    assert [a.labels[LABEL_ITEM] for a in made] == ["0", "1"]
    assert [a.job_name for a in made] == [item_job_name("run1", "f", i, 1) for i in (0, 1)]
    assert made[0].job_name.startswith("run1-f-0-")


def test_max_parallel_and_dependents_wait_for_the_whole_step() -> None:
    spec = workflow(fan("f", list(range(7)), parallel=3), step("after", "f"))
    cluster = Cluster(facts(spec), item_outcome=items_ending())
    p = cluster.reconcile()
    assert len(creates(p)) == 3 and st(p, "f").items.running == 3  # type: ignore[union-attr]
    assert st(p, "f").items.phases == "RRRPPPP"  # type: ignore[union-attr]
    cluster.finish()
    p = cluster.reconcile()
    assert [a.item for a in creates(p)] == [3, 4, 5]
    assert phases(p)["after"] == "Pending"
    p = cluster.run()
    assert p.status.phase == "Succeeded"
    assert p.status.item_progress == "7/7"


def test_templated_items_are_kept_and_rendered_once() -> None:
    spec = workflow(step("list"), fan("f", "{{ steps.list.outputs.v | tojson }}", "list",
                                      message="{{ item * 2 }}"))

    def outcome(s: str, attempt: int) -> ObservedJob:
        return ok(s, attempt, {"v": [1, 2, 3]})

    cluster = Cluster(facts(spec), outcome=outcome)
    cluster.reconcile()
    cluster.finish()
    p = cluster.reconcile()
    assert st(p, "f").items.values == [1, 2, 3]  # type: ignore[union-attr]
    assert sorted(a.config["message"] for a in creates(p)) == ["2", "4", "6"]


def test_cancel_deletes_running_items_and_cancels_the_rest() -> None:
    spec = workflow(fan("f", list(range(5)), parallel=2))
    cluster = Cluster(facts(spec))
    p = cluster.reconcile()
    running = sorted(a.job_name for a in creates(p))
    cluster.base = replace(cluster.base, spec=cluster.base.spec.model_copy(update={"cancel": True}))
    p = cluster.reconcile()
    assert sorted(deletes(p)) == running
    f = st(p, "f")
    assert f.phase == "Cancelled" and f.items is not None
    assert f.items.phases == "CCCCC" and f.items.active is None
    assert cluster.run().status.phase == "Cancelled"


def test_lost_status_write_adopts_item_jobs_instead_of_launching_again() -> None:
    spec = workflow(fan("f", list(range(4)), parallel=2))
    first = plan(facts(spec))
    jobs = [ObservedJob(a.job_name, a.step, a.attempt, "Active", item=a.item)
            for a in creates(first)]
    # The status write was lost: the same facts as before, but the Jobs exist.
    again = plan(facts(spec, jobs=jobs))
    assert not [a for a in creates(again) if a.is_new]
    f = st(again, "f")
    assert f.items is not None and f.items.phases == "RRPP" and f.attempts == 2


def test_retry_waits_for_its_time_and_keeps_its_slot() -> None:
    spec = workflow(fan("f", [0, 1], parallel=1, retry=retry(1, "30s")))
    cluster = Cluster(facts(spec), item_outcome=items_ending({0: 1}))
    cluster.reconcile()
    cluster.finish()
    p = cluster.reconcile()
    f = st(p, "f")
    assert f.items is not None and f.items.phases == "TP" and not creates(p)
    assert p.requeue_after == pytest.approx(30.0)
    assert f.items.active and f.items.active[0].next_attempt_at == at(30)
    cluster.now = at(30)
    p = cluster.reconcile()
    assert [(a.item, a.attempt) for a in creates(p)] == [(0, 2)]


def test_item_template_error_fails_that_item_only_with_continue_on_failure() -> None:
    spec = workflow(fan("f", [{"x": 1}, {}], message="{{ item.x }}", continue_on_failure=True))
    p = Cluster(facts(spec)).run()
    f = st(p, "f")
    assert f.phase == "Succeeded" and f.items is not None
    assert f.items.phases == "SF"
    assert f.items.failures and "item 1:" in (f.items.failures[0].message or "")


def test_outputs_list_is_read_by_a_later_step() -> None:
    spec = workflow(fan("f", [1, 2]), step("sum", "f",
                                          message="{{ steps.f.outputs | map(attribute='n')"
                                                  " | sum }}"))
    cluster = Cluster(facts(spec), item_outcome=items_ending())
    p = cluster.run()
    assert p.status.phase == "Succeeded"
    made = [a for q in cluster.plans for a in creates(q) if a.step == "sum"]
    assert made[0].config["message"] == "1"


def test_item_outputs_are_bounded_per_item() -> None:
    spec = workflow(fan("f", list(range(1000)), parallel=1000))
    big = "x" * 500

    def outcome(s: str, index: int, attempt: int) -> ObservedJob:
        return ok(s, attempt, {"n": index, "big": big})

    p = Cluster(facts(spec), item_outcome=outcome).run()
    f = st(p, "f")
    assert f.phase == "Succeeded" and f.items is not None
    first = f.items.outputs[0]  # type: ignore[index]
    assert first["n"] == 0 and "_truncated" in first and "big" not in first
    size = len(json.dumps(p.status.model_dump(mode="json", by_alias=True, exclude_none=True)))
    assert size < 200 * 1024


def test_terminal_item_jobs_are_left_alone_but_cancelled_ones_deleted() -> None:
    spec = workflow(fan("f", [0, 1], parallel=1))
    cluster = Cluster(facts(spec), item_outcome=items_ending())
    p = cluster.run()
    status: WorkflowRunStatus = p.status
    lagging = [ObservedJob(j.name, j.step, j.attempt, "Active", item=j.item)
               for j in cluster.jobs.values()]
    assert not deletes(plan(facts(spec, status, lagging)))


def test_script_item_gets_its_item() -> None:
    s = Step(name="f", for_each=ForEach(items=["a b"], max_parallel=1),
             script=ScriptStep(source="echo '{{ item }}' > $TASKFORGE_RESULT"))
    [made] = creates(plan(facts(workflow(s))))
    assert made.config["source"] == "echo 'a b' > $TASKFORGE_RESULT"
    assert made.step_type == "script"



@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (workflow(fan("f", [1], message="{{ item }} {{ index }}")), None),
        (workflow(step("a", message="{{ item }}")),
         "spec.steps[0].log.message: the template reads 'item', which is not defined"
         " (templates see params, steps, run and trigger) (item and index exist in forEach"
         " steps)"),
        (workflow(fan("f", "{{ item }}")),
         "spec.steps[0].forEach.items: the template reads 'item', which is not defined"),
        (workflow(fan("f", "{{ steps.g.outputs | tojson }}"), step("g")),
         "spec.steps[0].forEach.items: the template reads steps.g, which has not finished"),
        (workflow(step("a"), outputs={"x": "{{ steps.zz.outputs.v }}"}),
         "spec.outputs.x: the template reads steps.zz, which is not a step of this workflow"),
        (workflow(step("a"), outputs={"x": "{{ steps.a.outputs.v }} {{ params.q }}"}),
         "spec.outputs.x: the template reads params.q, which spec.params does not declare"),
    ],
)
def test_templates_are_checked_before_any_run(spec: Any, problem: str | None) -> None:
    problems = step_template_problems(spec, build(spec))
    if problem is None:
        assert problems == []
    else:
        assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"items": 5}, "forEach.items must be a list or a template string"),
        ({"items": list(range(1001))}, "1001 items, over the limit of 1000"),
        ({"items": [1], "maxParallel": 0}, "greater than or equal to 1"),
        ({"items": "  "}, "forEach.items: an empty template"),
    ],
)
def test_for_each_model_rejects(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        ForEach.model_validate(fields)


def test_for_each_with_rate_limit_is_rejected() -> None:
    with pytest.raises(ValueError, match="forEach cannot be combined with rateLimit"):
        Step.model_validate({"name": "f", "forEach": {"items": [1]}, "log": {"message": "x"},
                             "rateLimit": {"key": "k", "limit": 1, "per": "1s"}})
