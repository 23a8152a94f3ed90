"""The `log` step: write a message at a level. The seeds' "echo" task, and the start-up
benchmark's subject, so it imports nothing beyond its model."""

from __future__ import annotations

from typing import Any

from taskforge.api.step_types import LogStep

from taskforge_executor.steps import StepContext
from taskforge_executor.validate import validate


def run(config: Any, ctx: StepContext) -> dict[str, Any]:
    step = validate(LogStep, config, "log")
    ctx.console.line(step.level.upper(), step.message)
    return {"message": step.message}
