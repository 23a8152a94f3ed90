"""A step: one unit of work in a Workflow, and the fields every step type shares.

The step types themselves (what one Job runs) are in api/step_types.py, which the executor
imports alone; this module adds what the operator needs around them: dependencies, the
condition, retry and backoff, shared rate and concurrency limits, fan-out (forEach), and the
rules that say which of those a step type may have. It re-exports the step types for the
operator's code, tests and benchmarks, which import any part of a step from here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from taskforge.api.common import Model, StepName, cel_rule, k8s_validations
from taskforge.api.durations import DURATION_PATTERN, Duration
from taskforge.api.pod import PodSettings
from taskforge.api.step_types import (
    ApprovalStep,
    ContainerStep,
    EmailStep,
    HeaderValueSource,
    HttpHeader,
    HttpStep,
    LogStep,
    ScriptStep,
    SlackStep,
    WorkflowCall,
)

__all__ = [
    "APPROVAL_JOB_ONLY",
    "MAX_FOREACH_ITEMS",
    "MAX_ITEMS_TEMPLATE_CHARS",
    "STEP_TYPES",
    "ApprovalStep",
    "Backoff",
    "ContainerStep",
    "EmailStep",
    "FailureKind",
    "ForEach",
    "HeaderValueSource",
    "HttpHeader",
    "HttpStep",
    "LogStep",
    "RetryOn",
    "RetryPolicy",
    "ScriptStep",
    "SlackStep",
    "Step",
    "StepConcurrency",
    "StepRateLimit",
    "WorkflowCall",
]

FailureKind = Literal["Failed", "TimedOut", "PodFailure"]
RetryOn = Literal["Failed", "TimedOut", "PodFailure", "HTTPStatus"]
"""What `retry.on` can name: a FailureKind, or HTTPStatus (the codes in `retry.httpStatus`,
retried even when the executor calls them permanent, like a 404 of a resource that is still
being created)."""
STEP_TYPES = ("http", "script", "log", "container", "slack", "email", "workflow", "approval")
_RETRY_ON_DEFAULT: tuple[RetryOn, ...] = ("Failed", "TimedOut", "PodFailure")


class Backoff(Model):
    """How long to wait before each retry."""

    type: Literal["exponential", "fixed"] = Field(
        default="exponential",
        description="exponential: delay, then delay*factor, ... up to maxDelay; fixed: delay.",
    )
    delay: Duration = Field(
        default="10s",
        pattern=DURATION_PATTERN,
        description="Wait before the first retry, e.g. 10s.",
    )
    factor: float = Field(
        default=2.0, ge=1.0, le=10.0, description="Multiplier per retry (exponential), 1 to 10."
    )
    max_delay: Duration = Field(
        default="10m", pattern=DURATION_PATTERN, description="Upper bound of any wait, e.g. 10m."
    )


_HTTP_STATUS_RULE_MESSAGE = "retry.httpStatus must be set exactly when retry.on contains HTTPStatus"


class RetryPolicy(Model):
    """When and how often a failed step is tried again."""

    model_config = ConfigDict(
        json_schema_extra=k8s_validations(
            cel_rule(
                "has(self.httpStatus) == (has(self.on) && self.on.exists(k, k == 'HTTPStatus'))",
                _HTTP_STATUS_RULE_MESSAGE,
                field_path=".httpStatus",
            )
        )
    )

    limit: int = Field(
        default=0, ge=0, le=100, description="Retries after the first attempt, 0 to 100."
    )
    backoff: Backoff = Field(default_factory=Backoff, description="Wait between attempts.")
    on: list[RetryOn] = Field(
        default_factory=lambda: list(_RETRY_ON_DEFAULT),
        max_length=4,
        description="Which failures are retried: Failed (a retryable exit of the step),"
        " TimedOut (the step's timeout), PodFailure (the pod was lost or evicted),"
        " HTTPStatus (an HTTP reply whose status is listed in httpStatus, even a 4xx that is"
        " otherwise permanent). Default: Failed, TimedOut, PodFailure.",
    )
    http_status: list[Annotated[int, Field(ge=400, le=599)]] | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description="HTTP status codes (400 to 599) retried when on contains HTTPStatus,"
        " e.g. [404, 409]. Without it a 4xx other than 408 and 429 is never retried.",
    )

    @model_validator(mode="after")
    def _http_status_with_on(self) -> RetryPolicy:
        if (self.http_status is not None) != ("HTTPStatus" in self.on):
            raise ValueError(_HTTP_STATUS_RULE_MESSAGE)
        return self


class StepRateLimit(Model):
    """A start-rate limit shared by every step, in any workflow, that names the same key."""

    key: str = Field(
        min_length=1, max_length=128, description="Shared key, e.g. github-api, across workflows."
    )
    limit: int = Field(ge=1, le=1_000_000, description="Step starts allowed per interval.")
    per: Duration = Field(pattern=DURATION_PATTERN, description="Interval, e.g. 1m.")


class StepConcurrency(Model):
    """A limit on running steps shared by every step, in any workflow, that names the same key."""

    key: str = Field(min_length=1, max_length=128, description="Shared key across workflows.")
    max_running: int = Field(ge=1, le=10_000, description="Steps running at once under the key.")


MAX_FOREACH_ITEMS = 1000
"""Items of one forEach step: each is its own Job series, and the status keeps a phase letter
and (while it runs or after it failed) a small record per item; see engine/fanout.py."""
MAX_ITEMS_TEMPLATE_CHARS = 4096


class ForEach(Model):
    """Run the step once per item, each item its own series of attempts (Jobs, retries)."""

    items: Any = Field(
        description="The items: a list (at most 1,000), or a template that renders to a JSON"
        " list, e.g. '{{ steps.list.outputs.names | tojson }}'. The step's templates see"
        " {{ item }} and {{ index }} (from 0). Any JSON: its size counts toward the run's"
        " size (see README, Limits).",
    )
    max_parallel: int = Field(
        default=10,
        ge=1,
        le=MAX_FOREACH_ITEMS,
        description="Items running (or waiting for a retry) at once, 1 to 1,000; default 10.",
    )

    @model_validator(mode="after")
    def _items_shape(self) -> ForEach:
        items = self.items
        if isinstance(items, str):
            if not items.strip():
                raise ValueError("forEach.items: an empty template")
            if len(items) > MAX_ITEMS_TEMPLATE_CHARS:
                raise ValueError(f"forEach.items: a template of {len(items)} characters, over"
                                 f" {MAX_ITEMS_TEMPLATE_CHARS}")
        elif isinstance(items, list):
            if len(items) > MAX_FOREACH_ITEMS:
                raise ValueError(f"forEach.items: {len(items)} items, over the limit of"
                                 f" {MAX_FOREACH_ITEMS}")
        else:
            raise ValueError("forEach.items must be a list or a template string that renders"
                             f" to a JSON list, not {type(items).__name__}")
        return self


_FOREACH_LIMITS_MESSAGE = "forEach cannot be combined with rateLimit or concurrency"
_WORKFLOW_STEP_MESSAGE = "a workflow step cannot have forEach, rateLimit, concurrency or pod"
APPROVAL_JOB_ONLY = ("retry", "timeout", "pod", "rate_limit", "concurrency", "for_each")
_APPROVAL_MESSAGE = ("an approval step runs no Job: retry, timeout (use approval.timeout), pod,"
                     " rateLimit, concurrency and forEach do not apply")


class Step(Model):
    """One unit of work, run as one Kubernetes Job per attempt. Set exactly one step type:
    http, script, log, container, slack, email or workflow."""

    model_config = ConfigDict(
        json_schema_extra=k8s_validations(
            cel_rule(
                "[" + ", ".join(f"has(self.{t})" for t in STEP_TYPES) + "]"
                ".filter(t, t).size() == 1",
                message_expression="'step ' + self.name + ' must set exactly one step type"
                " (" + ", ".join(STEP_TYPES) + ")'",
            ),
            cel_rule(
                "!has(self.forEach) || (!has(self.rateLimit) && !has(self.concurrency))",
                _FOREACH_LIMITS_MESSAGE,
                field_path=".forEach",
            ),
            cel_rule(
                "!has(self.workflow) || (!has(self.forEach) && !has(self.rateLimit)"
                " && !has(self.concurrency) && !has(self.pod))",
                _WORKFLOW_STEP_MESSAGE,
                field_path=".workflow",
            ),
            cel_rule(
                "!has(self.approval) || (!has(self.retry) && !has(self.timeout)"
                " && !has(self.pod) && !has(self.rateLimit) && !has(self.concurrency)"
                " && !has(self.forEach))",
                _APPROVAL_MESSAGE,
                field_path=".approval",
            ),
        )
    )

    name: StepName
    depends_on: list[StepName] | None = Field(
        default=None,
        max_length=100,
        description="Names of steps that must finish before this one starts. A finally step may"
        " name steps and other finally steps.",
    )
    when: str | None = Field(
        default=None,
        max_length=4096,
        description="A CEL condition over params, steps (steps.NAME.phase, steps.NAME.outputs)"
        " and run; when it is false the step is Skipped.",
    )
    retry: RetryPolicy | None = Field(
        default=None, description="Retry policy for this step (default: the workflow's retry)."
    )
    timeout: Duration | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="Time limit of each attempt, e.g. 5m (default: the workflow's stepTimeout).",
    )
    continue_on_failure: bool = Field(
        default=False, description="A failure of this step does not fail the run."
    )
    # Optional rather than a CRD default: a default would be stored in every step of every
    # spec, and copied into every run's pinned spec.
    reuse_on_retry: bool | None = Field(
        default=None,
        description="Default true: a retry of a failed run (taskforge retry) may reuse this"
        " step's recorded outputs instead of running it again, if it succeeded and every step"
        " it depends on is reused too. Only outputs are reused, never side effects: set false"
        " for a step whose effects do not outlive its run (a scratch directory a finally step"
        " removes, a temporary resource), and a retry runs it again.",
    )
    rate_limit: StepRateLimit | None = Field(
        default=None, description="Start-rate limit shared across workflows by key."
    )
    concurrency: StepConcurrency | None = Field(
        default=None, description="Running-steps limit shared across workflows by key."
    )
    http: HttpStep | None = Field(default=None, description="Make an HTTP request.")
    script: ScriptStep | None = Field(default=None, description="Run a sh, bash or python script.")
    log: LogStep | None = Field(default=None, description="Write a log message.")
    container: ContainerStep | None = Field(default=None, description="Run any container image.")
    slack: SlackStep | None = Field(default=None, description="Post to a Slack incoming webhook.")
    email: EmailStep | None = Field(default=None, description="Send an e-mail over SMTP.")
    workflow: WorkflowCall | None = Field(
        default=None,
        description="Run another Workflow of this namespace as a child run; the step ends with"
        " it (no retries), its outputs are the child's run outputs. Cancelling this run"
        " cancels the child; calls nest at most 5 deep and a cycle fails the step.",
    )
    approval: ApprovalStep | None = Field(
        default=None,
        description="Wait, with no Job, for a person to approve or reject (the run's"
        " spec.approvals); the step's phase is Waiting meanwhile. Approved: Succeeded; rejected:"
        " Failed; see approval.timeout.",
    )
    for_each: ForEach | None = Field(
        default=None,
        description="Fan-out: run the step once per item, at most maxParallel at once. It"
        " succeeds when every item does (with continueOnFailure: when they have all ended,"
        " failed items allowed); its outputs are the list of the items' outputs, in order.",
    )
    pod: PodSettings | None = Field(
        default=None,
        description="Pod settings of this step (service account, pull secrets, scheduling,"
        " resources, labels, volumes); merged over the workflow's spec.pod, this step's win.",
    )

    @model_validator(mode="after")
    def _exactly_one_type(self) -> Step:
        chosen = [t for t in STEP_TYPES if getattr(self, t) is not None]
        if len(chosen) != 1:
            raise ValueError(
                f"step {self.name!r} must set exactly one of {', '.join(STEP_TYPES)}"
                f" (found {len(chosen)}: {', '.join(chosen) or 'none'})"
            )
        return self

    @model_validator(mode="after")
    def _for_each_alone(self) -> Step:
        if self.for_each is not None and (self.rate_limit or self.concurrency):
            raise ValueError(f"step {self.name!r}: {_FOREACH_LIMITS_MESSAGE}")
        if self.workflow is not None and (self.for_each or self.rate_limit or self.concurrency
                                          or self.pod):
            raise ValueError(f"step {self.name!r}: {_WORKFLOW_STEP_MESSAGE}")
        if self.approval is not None and any(getattr(self, f) for f in APPROVAL_JOB_ONLY):
            raise ValueError(f"step {self.name!r}: {_APPROVAL_MESSAGE}")
        return self

    @property
    def step_type(self) -> str:
        return next(t for t in STEP_TYPES if getattr(self, t) is not None)

    @property
    def dependencies(self) -> list[str]:
        return list(self.depends_on or [])
