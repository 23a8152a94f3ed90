"""The step graph: deterministic order, unknown references and cycles named precisely."""

from __future__ import annotations

import pytest
from enginekit import step
from taskforge.api.steps import Step
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.dag import DagError, build


def spec_unchecked(steps: list[Step], final: list[Step] | None = None) -> WorkflowSpec:
    """A spec that skips pydantic's own reference check, as a hand-edited status might."""
    return WorkflowSpec.model_construct(steps=steps, finally_steps=final)


@pytest.mark.parametrize(
    ("steps", "order"),
    [
        ([step("a"), step("b", "a"), step("c", "b")], ("a", "b", "c")),
        ([step("c", "b"), step("b", "a"), step("a")], ("a", "b", "c")),
        ([step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")], ("a", "b", "c", "d")),
        ([step("x"), step("y"), step("z", "x", "y")], ("x", "y", "z")),
        ([step("a"), step("b", "a", "a")], ("a", "b")),  # duplicate dependency
    ],
    ids=["chain", "chain reversed", "diamond", "fan-in", "duplicate dep"],
)
def test_order_is_topological_and_stable(steps: list[Step], order: tuple[str, ...]) -> None:
    dag = build(spec_unchecked(steps))
    assert dag.order == order
    assert dag.main == order and dag.final == ()


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([step("a", "b"), step("b", "a")], "spec.steps: dependency cycle: a -> b -> a"),
        ([step("a", "a")], "spec.steps: dependency cycle: a -> a"),
        ([step("s"), step("a", "c"), step("b", "a"), step("c", "b", "s")],
         "spec.steps: dependency cycle: a -> c -> b -> a"),
        ([step("a"), step("b", "nope")],
         "spec.steps[1].dependsOn[0]: step 'b' depends on unknown step 'nope'"),
        ([step("a"), step("a")], "spec.steps[1].name: step name 'a' is used twice"),
    ],
    ids=["two-cycle", "self-loop", "three-cycle", "unknown", "duplicate"],
)
def test_invalid_graphs_name_the_field(steps: list[Step], message: str) -> None:
    with pytest.raises(DagError) as err:
        build(spec_unchecked(steps))
    assert str(err.value) == message


def test_finally_steps_may_depend_on_main_and_finally_steps() -> None:
    dag = build(spec_unchecked([step("a")], [step("g", "f"), step("f", "a")]))
    assert dag.order == ("a", "f", "g")
    assert dag.final == ("f", "g") and dag.is_final("f") and not dag.is_final("a")


def test_main_steps_may_not_depend_on_finally_steps() -> None:
    with pytest.raises(DagError, match=r"spec.steps\[0\].dependsOn\[0\].*unknown step 'f'"):
        build(spec_unchecked([step("a", "f")], [step("f")]))


def test_cycle_among_finally_steps() -> None:
    with pytest.raises(DagError, match=r"spec.finally: dependency cycle: f -> g -> f"):
        build(spec_unchecked([step("a")], [step("f", "g"), step("g", "f")]))


def test_long_chain_does_not_recurse() -> None:
    steps = [step("s0")] + [step(f"s{i}", f"s{i - 1}") for i in range(1, 3000)]
    assert build(spec_unchecked(steps)).order[-1] == "s2999"
