"""Resolving a run's params against the workflow's declarations, once, when the run starts.

The resolved values are written to status, so later reconciles (and templates) never see a
different value even if the Workflow's defaults are edited while the run is under way.
"""

from __future__ import annotations

from typing import Any

from taskforge.api.workflow import ParamSpec, ParamType


class ParamsError(ValueError):
    """A param is missing, unknown or of the wrong JSON type; the message names the field."""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def type_matches(expected: ParamType, value: Any) -> bool:
    """JSON Schema's reading: an integer is a number, a bool is neither."""
    actual = _json_type(value)
    if expected == "number":
        return actual in ("integer", "number")
    if expected == "integer" and actual == "number":
        return float(value).is_integer()
    return actual == expected


def check_defaults(declared: list[ParamSpec]) -> None:
    """A default of the wrong type is the workflow's fault (InvalidWorkflow), not the run's."""
    for i, p in enumerate(declared):
        if p.default is not None and not type_matches(p.type, p.default):
            raise ParamsError(
                f"spec.params[{i}].default: param {p.name!r} expects {p.type},"
                f" got {_json_type(p.default)}"
            )


def resolve_params(declared: list[ParamSpec], given: dict[str, Any] | None) -> dict[str, Any]:
    """Declared params with the run's values or defaults; unset optional ones are left out.

    Leaving them out (rather than null) makes `{{ params.x }}` fail loudly and lets `when`
    test `has(params.x)`. Unknown names are errors: a typo must not be ignored silently.
    """
    given = given or {}
    names = {p.name for p in declared}
    unknown = sorted(k for k in given if k not in names)
    if unknown:
        listed = ", ".join(sorted(names)) or "none"
        raise ParamsError(
            f"spec.params.{unknown[0]}: unknown param {unknown[0]!r} (declared: {listed})"
        )
    resolved: dict[str, Any] = {}
    for p in declared:
        if p.name in given:
            value = given[p.name]
            if not type_matches(p.type, value):
                raise ParamsError(
                    f"spec.params.{p.name}: expects {p.type}, got {_json_type(value)}"
                )
            if p.type == "integer" and isinstance(value, float):
                value = int(value)
            resolved[p.name] = value
        elif p.default is not None:
            resolved[p.name] = p.default
        elif p.required:
            raise ParamsError(f"spec.params.{p.name}: required param is missing")
    return resolved
