"""The executor's settings: the variables the operator sets on every step pod, as a
pydantic model read from the environment.

Not a pydantic-settings `BaseSettings`, unlike the operator's and Redis's: importing
pydantic_settings pulls in asyncio, ssl, argparse and concurrent.futures, ~60-110 ms of CPU
on every step pod's start for nothing it would add here (the values come from one mapping,
the pod's environment, which `load_settings` is given, so tests pass their own).

`ExecutorSettings` is the one place for each variable's type, default and doc (the names
stay in contract.py, which the operator imports to build the pod). A bad value fails the
step at start-up, permanently, with the variable named in the termination message, as a
bad envelope does, instead of being taken for a default (a non-numeric attempt used to
read as attempt 1). The secrets (`TASKFORGE_SECRET_*`) are not settings: each step reads
the ones its config wires. `TASKFORGE_STEP`'s JSON is checked by __main__._envelope, which
names the field at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from taskforge_executor import contract
from taskforge_executor.outcome import StepError, permanent


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


class ExecutorSettings(BaseModel):
    """Read from the mapping given (the process environment in the pod), nothing else."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    step: str | None = Field(
        validation_alias=contract.ENV_STEP, default=None,
        description="The step: JSON {name, type, config}, templates rendered. Required.")
    run: str = Field(
        validation_alias=contract.ENV_RUN, default="",
        description="Name of the WorkflowRun (log lines, scripts).")
    namespace: str = Field(
        validation_alias=contract.ENV_NAMESPACE, default="",
        description="Namespace of the run.")
    attempt: int = Field(
        validation_alias=contract.ENV_ATTEMPT, default=1, ge=1,
        description="1-based attempt number of this step.")
    workflow: str = Field(
        validation_alias=contract.ENV_WORKFLOW, default="",
        description="Name of the run's Workflow (JSON log lines).")
    log_format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = Field(
        validation_alias=contract.ENV_LOG_FORMAT, default="text",
        description="The executor's own log lines as `text` or `json` objects.")
    termination_message_path: str = Field(
        validation_alias=contract.ENV_TERMINATION_MESSAGE_PATH,
        default=contract.DEFAULT_TERMINATION_MESSAGE_PATH,
        description="Where the result JSON is written for the operator.")

    @classmethod
    def variables(cls) -> dict[str, tuple[Any, str]]:
        """Each variable's name, default and doc."""
        return {str(f.validation_alias): (f.default, f.description or "")
                for f in cls.model_fields.values()}


def load_settings(env: Mapping[str, str]) -> ExecutorSettings:
    """The settings from `env`; a bad value is a permanent StepError naming the variable.
    An empty variable means its default, as an unset one."""
    try:
        return ExecutorSettings.model_validate({k: v for k, v in env.items() if v != ""})
    except ValidationError as exc:
        raise _bad(exc) from None


def _bad(exc: ValidationError) -> StepError:
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
                         for e in exc.errors())
    return permanent(f"bad executor settings: {problems}")
