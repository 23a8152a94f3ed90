"""Config validation with the operator's own pydantic models.

Using `taskforge.api.step_types` (not a copy) means the executor accepts exactly what the CRD
and `taskforge validate` accept. Only step runners import this module, and each imports
just its own model, so nothing here loads before the step type is known.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from taskforge_executor.outcome import StepError, permanent

M = TypeVar("M", bound=BaseModel)


def field_path(loc: tuple[int | str, ...]) -> str:
    """`("headers", 0, "name")` → `headers[0].name`, as a user writes it in YAML."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "config"


def validate(model: type[M], config: Any, step_type: str) -> M:
    """The validated model, or a permanent failure naming every bad field."""
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(
            f"{field_path(tuple(err['loc']))}: {err['msg']}" for err in exc.errors()
        )
        raise invalid(step_type, problems) from None


def invalid(step_type: str, problem: str) -> StepError:
    """The permanent failure for a malformed step config."""
    return permanent(f"invalid {step_type} config: {problem}")
