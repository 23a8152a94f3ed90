"""Pydantic models of Taskforge's resources; the CRDs in crds/ are generated from them."""

from taskforge.api.common import Condition, EnvVar, SecretKeyRef
from taskforge.api.run import (
    TERMINAL_RUN_PHASES,
    TERMINAL_STEP_PHASES,
    DeadLetter,
    StepStatus,
    WorkflowRun,
    WorkflowRunSpec,
    WorkflowRunStatus,
)
from taskforge.api.steps import RetryPolicy, Step
from taskforge.api.workflow import Workflow, WorkflowSpec, WorkflowStatus

__all__ = [
    "TERMINAL_RUN_PHASES",
    "TERMINAL_STEP_PHASES",
    "Condition",
    "DeadLetter",
    "EnvVar",
    "RetryPolicy",
    "SecretKeyRef",
    "Step",
    "StepStatus",
    "Workflow",
    "WorkflowRun",
    "WorkflowRunSpec",
    "WorkflowRunStatus",
    "WorkflowSpec",
    "WorkflowStatus",
]
