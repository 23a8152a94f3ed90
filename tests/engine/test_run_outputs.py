"""Run outputs: the workflow's `outputs` templates, rendered when the run succeeds."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from enginekit import Cluster, cond, facts, fail, ok, step, workflow
from taskforge.api.workflow import ParamSpec
from taskforge.engine.facts import ObservedJob
from taskforge.engine.runoutputs import MAX_RUN_OUTPUTS_BYTES


def outcome(s: str, attempt: int) -> ObservedJob:
    if s == "bad":
        return fail(s, attempt, 78)
    return ok(s, attempt, {"value": 21, "name": s, "big": "x" * 1500})


@dataclass(frozen=True)
class Case:
    id: str
    outputs: dict[str, str]
    phase: str
    reason: str
    expect: dict[str, str] | None = None
    message: str = ""
    fails: bool = False


CASES = [
    Case("lookup and jinja", {"total": "{{ steps.a.outputs.value }}",
                              "double": "{{ steps.a.outputs.value * 2 }}",
                              "run": "{{ run.name }}/{{ params.p }}"},
         "Succeeded", "Succeeded", {"total": "21", "double": "42", "run": "run1/7"}),
    Case("json of a step's outputs", {"all": "{{ steps.a.outputs | tojson }}"}, "Succeeded",
         "Succeeded"),
    Case("unknown key names the output", {"x": "{{ steps.a.outputs.nope }}"}, "Failed",
         "OutputsFailed", message="outputs.x"),
    Case("too large in all", {f"o{i}": "{{ steps.a.outputs.big }}" for i in range(12)},
         "Failed", "OutputsFailed", message="over the limit of 16,384"),
    Case("not rendered for a failed run", {"x": "{{ steps.a.outputs.value }}"}, "Failed",
         "Failed", fails=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_run_outputs(case: Case) -> None:
    steps = [step("a")] + ([step("bad", "a")] if case.fails else [])
    spec = workflow(*steps, outputs=case.outputs, params=[ParamSpec(name="p", type="integer")])
    base = facts(spec, params={"p": 7})
    p = Cluster(base, outcome=outcome).run()
    assert p.status.phase == case.phase
    assert cond(p) == ("True" if case.phase == "Succeeded" else "False", case.reason)
    if case.expect is not None:
        assert p.status.outputs == case.expect
    if case.phase != "Succeeded":
        assert p.status.outputs is None
        assert case.message in (p.status.message or "")
    if case.id == "json of a step's outputs":
        assert p.status.outputs is not None and '"value": 21' in p.status.outputs["all"]


def test_no_outputs_declared_leaves_status_unset() -> None:
    p = Cluster(facts(workflow(step("a")))).run()
    assert p.status.phase == "Succeeded" and p.status.outputs is None


def test_limit_is_documented_value() -> None:
    assert MAX_RUN_OUTPUTS_BYTES == 16 * 1024


def test_finished_run_keeps_its_outputs_on_replan() -> None:
    spec = workflow(step("a"), outputs={"v": "{{ steps.a.outputs.value }}"})
    cluster = Cluster(facts(spec), outcome=outcome)
    p = cluster.run()
    again = cluster.reconcile()
    assert again.status == p.status and not again.actions
