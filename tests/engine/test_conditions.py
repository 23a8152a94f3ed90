"""CEL `when` conditions and Kubernetes-convention conditions."""

from __future__ import annotations

from typing import Any

import pytest
from enginekit import T0, at
from taskforge.engine.conditions import WhenError, check_when, evaluate_when, set_condition

CTX: dict[str, Any] = {
    "params": {"env": "prod", "n": 3},
    "steps": {"check": {"phase": "Succeeded", "outputs": {"changed": True}, "exitCode": 0},
              "my-step": {"phase": "Failed", "outputs": {}, "exitCode": 1}},
}


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("params.env == 'prod'", True),
        ("params.n > 5", False),
        ("steps.check.outputs.changed", True),
        ("steps['my-step'].phase == 'Failed'", True),
        ("has(params.missing)", False),
        ("params.env in ['dev', 'staging']", False),
    ],
)
def test_when_values(expr: str, value: bool) -> None:
    assert evaluate_when(expr, CTX) is value


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("params.n", "must give a bool, got int 3"),
        ("params.env", "must give a bool, got str 'prod'"),
        ("params.missing == 1", "no such key 'missing'"),
        ("params.n + 'x' == 1", "No such overload"),
        ("params.n ==", "invalid CEL expression"),
    ],
)
def test_when_errors_are_clear(expr: str, message: str) -> None:
    with pytest.raises(WhenError) as err:
        evaluate_when(expr, CTX)
    assert message in str(err.value)


def test_check_when_reports_syntax_only() -> None:
    assert check_when("params.x == 1") is None
    problem = check_when("1 +")
    assert problem is not None and problem.startswith("invalid CEL expression '1 +'")


def test_set_condition_keeps_transition_time_while_status_is_unchanged() -> None:
    first = set_condition(None, type_="Succeeded", status="Unknown", reason="Running",
                          message="m", now=T0, observed_generation=1)
    same = set_condition(first, type_="Succeeded", status="Unknown", reason="Running",
                         message="m", now=at(5), observed_generation=1)
    assert same == first and same[0] is first[0]
    waiting = set_condition(first, type_="Succeeded", status="Unknown", reason="Waiting",
                            message="w", now=at(10), observed_generation=1)
    assert waiting[0].last_transition_time == T0 and waiting[0].reason == "Waiting"
    done = set_condition(waiting, type_="Succeeded", status="True", reason="Succeeded",
                         message="", now=at(20), observed_generation=2)
    assert done[0].last_transition_time == at(20) and done[0].observed_generation == 2


def test_set_condition_leaves_other_types_alone() -> None:
    valid = set_condition(None, type_="Valid", status="True", reason="Valid", message="",
                          now=T0, observed_generation=1)
    both = set_condition(valid, type_="Succeeded", status="Unknown", reason="Running",
                         message="", now=T0, observed_generation=1)
    assert [c.type for c in both] == ["Valid", "Succeeded"] and both[0] is valid[0]
