"""Params: defaults, required, JSON types, unknown names."""

from __future__ import annotations

from typing import Any

import pytest
from taskforge.api.workflow import ParamSpec
from taskforge.engine.params import ParamsError, check_defaults, resolve_params

DECLARED = [
    ParamSpec(name="env", required=True),
    ParamSpec(name="count", type="integer", default=1),
    ParamSpec(name="ratio", type="number"),
    ParamSpec(name="dry", type="boolean", default=False),
    ParamSpec(name="tags", type="array"),
    ParamSpec(name="extra", type="object"),
]


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        ({"env": "prod"}, {"env": "prod", "count": 1, "dry": False}),
        ({"env": "x", "count": 5, "ratio": 2}, {"env": "x", "count": 5, "ratio": 2, "dry": False}),
        ({"env": "x", "count": 5.0}, {"env": "x", "count": 5, "dry": False}),
        ({"env": "x", "ratio": 0.5, "tags": ["a"], "extra": {"k": 1}, "dry": True},
         {"env": "x", "count": 1, "ratio": 0.5, "dry": True, "tags": ["a"], "extra": {"k": 1}}),
    ],
)
def test_resolve(given: dict[str, Any], resolved: dict[str, Any]) -> None:
    assert resolve_params(DECLARED, given) == resolved


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "spec.params.env: required param is missing"),
        ({"env": 1}, "spec.params.env: expects string, got integer"),
        ({"env": "x", "count": "5"}, "spec.params.count: expects integer, got string"),
        ({"env": "x", "count": 1.5}, "spec.params.count: expects integer, got number"),
        ({"env": "x", "dry": "true"}, "spec.params.dry: expects boolean, got string"),
        ({"env": "x", "ratio": True}, "spec.params.ratio: expects number, got boolean"),
        ({"env": "x", "tags": {}}, "spec.params.tags: expects array, got object"),
        ({"env": "x", "typo": 1},
         "spec.params.typo: unknown param 'typo' (declared: count, dry, env, extra, ratio, tags)"),
    ],
)
def test_invalid(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamsError) as err:
        resolve_params(DECLARED, given)
    assert str(err.value) == message


def test_defaults_of_the_wrong_type_are_a_workflow_error() -> None:
    with pytest.raises(ParamsError, match=r"spec.params\[0\].default: .* expects integer, got str"):
        check_defaults([ParamSpec(name="n", type="integer", default="three")])
