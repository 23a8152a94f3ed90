"""CEL `when` conditions, and Kubernetes-convention conditions on the run's status.

CEL is the expression language of Kubernetes itself (CRD validation rules), so users write
`when` the way they write `x-kubernetes-validations`. A condition that does not compile is a
workflow error found when the run starts; one that fails at run time, or yields something
other than a bool, fails its step with a message naming the expression.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

import cel

from taskforge.api.common import Condition, ConditionStatus

SUCCEEDED = "Succeeded"


class WhenError(ValueError):
    """A `when` expression failed to compile or to evaluate, or did not give a bool."""


@lru_cache(maxsize=4096)
def _compile(expression: str) -> Any:
    try:
        return cel.compile(expression)
    except Exception as exc:
        raise WhenError(f"invalid CEL expression {expression!r}: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def check_when(expression: str) -> str | None:
    """None when the expression compiles, else why not (for validation at run start)."""
    try:
        _compile(expression)
    except WhenError as exc:
        return str(exc)
    return None


def evaluate_when(expression: str, context: dict[str, Any]) -> bool:
    """Evaluate a compiled `when`; anything but a bool result is an error, not falsy.

    Treating "missing key" or `"false"` (a string) as false would silently skip steps.
    """
    program = _compile(expression)
    try:
        result = program.execute(context)
    except KeyError as exc:
        raise WhenError(f"{expression!r}: no such key {exc}") from exc
    except Exception as exc:
        raise WhenError(f"{expression!r}: {_first_line(exc)}") from exc
    if not isinstance(result, bool):
        raise WhenError(
            f"{expression!r} must give a bool, got {type(result).__name__} {result!r}"
        )
    return result


def get_condition(conditions: list[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or () if c.type == type_), None)


def set_condition(
    conditions: list[Condition] | None,
    *,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None,
) -> list[Condition]:
    """Replace one condition by type, as the API conventions say.

    `lastTransitionTime` changes only when `status` changes (not on a new reason or message),
    and an unchanged condition keeps its very object, so an idle replan yields an equal status
    and the adapter can skip the patch.
    """
    old = get_condition(conditions, type_)
    if (
        old is not None
        and old.status == status
        and old.reason == reason
        and old.message == message
        and old.observed_generation == observed_generation
    ):
        return list(conditions or ())
    # Whole seconds, unlike the rest of status: `lastTransitionTime` is a metav1.Time in the
    # API conventions, and a Go client reading conditions as metav1.Condition expects that.
    changed_at = (old.last_transition_time if old is not None and old.status == status
                  else now.replace(microsecond=0))
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=changed_at,
        observed_generation=observed_generation,
    )
    if old is None:
        return [*(conditions or ()), new]
    return [new if c.type == type_ else c for c in conditions or ()]
