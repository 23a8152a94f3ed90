"""The step types: what one Job runs. A step has exactly one of them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from taskforge.api.common import (
    EnvVar,
    Model,
    ResourceRequirements,
    SecretKeyRef,
    StepName,
)
from taskforge.api.durations import DURATION_PATTERN

Duration = str
FailureKind = Literal["Failed", "TimedOut", "PodFailure"]
STEP_TYPES = ("http", "script", "log", "container", "slack", "email")


class HeaderValueSource(Model):
    secret_key_ref: SecretKeyRef = Field(description="Read the header value from a Secret.")


class HttpHeader(Model):
    name: str = Field(min_length=1, max_length=256, description="Header name.")
    value: str | None = Field(default=None, description="Literal value (templates allowed).")
    value_from: HeaderValueSource | None = Field(
        default=None, description="Read the value from a Secret; it is never written to status."
    )


class HttpStep(Model):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = Field(
        default="GET", description="HTTP method."
    )
    url: str = Field(min_length=1, max_length=2048, description="URL (templates allowed).")
    query: dict[str, str] | None = Field(default=None, description="Query parameters to add.")
    headers: list[HttpHeader] | None = Field(default=None, description="Request headers.")
    json_body: Any = Field(
        default=None, alias="json", description="A JSON body (templates allowed in strings)."
    )
    body: str | None = Field(default=None, description="A raw body; not together with json.")
    timeout: Duration = Field(
        default="30s", pattern=DURATION_PATTERN, description="Request timeout, e.g. 30s."
    )
    success_codes: list[int] | None = Field(
        default=None,
        description="Status codes that count as success; default: any 2xx.",
    )
    response_headers: list[str] | None = Field(
        default=None, description="Response headers to keep in the step's outputs."
    )
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate.")

    @model_validator(mode="after")
    def _one_body(self) -> HttpStep:
        if self.json_body is not None and self.body is not None:
            raise ValueError("set at most one of json and body")
        return self


class ScriptStep(Model):
    language: Literal["sh", "bash", "python"] = Field(
        default="sh", description="Interpreter for the source."
    )
    source: str = Field(min_length=1, max_length=65536, description="The script (templates allowed).")
    env: list[EnvVar] | None = Field(default=None, description="Environment variables.")
    working_dir: str | None = Field(default=None, description="Working directory.")


class LogStep(Model):
    message: str = Field(min_length=1, max_length=4096, description="Message (templates allowed).")
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level."
    )


class ContainerStep(Model):
    image: str = Field(min_length=1, max_length=512, description="Any container image.")
    command: list[str] | None = Field(default=None, description="Entrypoint override.")
    args: list[str] | None = Field(default=None, description="Arguments (templates allowed).")
    env: list[EnvVar] | None = Field(default=None, description="Environment variables.")
    working_dir: str | None = Field(default=None, description="Working directory.")
    resources: ResourceRequirements | None = Field(default=None, description="CPU and memory.")


class SlackStep(Model):
    webhook_url_from: SecretKeyRef = Field(
        description="Secret key holding the Slack incoming-webhook URL."
    )
    text: str | None = Field(default=None, description="Message text (templates allowed).")
    blocks: list[dict[str, Any]] | None = Field(default=None, description="Slack Block Kit blocks.")


class EmailStep(Model):
    host: str = Field(min_length=1, max_length=253, description="SMTP server host.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP server port.")
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls, implicit tls, or none."
    )
    username_from: SecretKeyRef | None = Field(default=None, description="Secret key: user name.")
    password_from: SecretKeyRef | None = Field(default=None, description="Secret key: password.")
    from_address: str = Field(alias="from", min_length=3, description="Sender address.")
    to: list[str] = Field(min_length=1, description="Recipient addresses.")
    subject: str = Field(min_length=1, max_length=998, description="Subject (templates allowed).")
    body: str = Field(description="Plain-text body (templates allowed).")


class Backoff(Model):
    type: Literal["exponential", "fixed"] = Field(default="exponential", description="Growth.")
    delay: Duration = Field(
        default="10s", pattern=DURATION_PATTERN, description="Wait before the first retry."
    )
    factor: float = Field(default=2.0, ge=1.0, le=10.0, description="Multiplier (exponential).")
    max_delay: Duration = Field(
        default="10m", pattern=DURATION_PATTERN, description="Upper bound of any wait."
    )


class RetryPolicy(Model):
    limit: int = Field(default=0, ge=0, le=100, description="Retries after the first attempt.")
    backoff: Backoff = Field(default_factory=Backoff, description="Wait between attempts.")
    on: list[FailureKind] = Field(
        default_factory=lambda: ["Failed", "TimedOut", "PodFailure"],
        description="Which failures are retried: Failed (retryable exit), TimedOut, PodFailure.",
    )


class StepRateLimit(Model):
    key: str = Field(
        min_length=1, max_length=128, description="Shared key, e.g. github-api, across workflows."
    )
    limit: int = Field(ge=1, le=1_000_000, description="Step starts allowed per interval.")
    per: Duration = Field(pattern=DURATION_PATTERN, description="Interval, e.g. 1m.")


class StepConcurrency(Model):
    key: str = Field(min_length=1, max_length=128, description="Shared key across workflows.")
    max_running: int = Field(ge=1, le=10_000, description="Steps running at once under the key.")


class Step(Model):
    name: StepName
    depends_on: list[StepName] | None = Field(
        default=None, description="Steps that must finish before this one starts."
    )
    when: str | None = Field(
        default=None,
        max_length=4096,
        description="A CEL condition over params, steps and run; the step is Skipped if false.",
    )
    retry: RetryPolicy | None = Field(default=None, description="Retry policy for this step.")
    timeout: Duration | None = Field(
        default=None, pattern=DURATION_PATTERN, description="Per-attempt time limit, e.g. 5m."
    )
    continue_on_failure: bool = Field(
        default=False, description="A failure of this step does not fail the run."
    )
    rate_limit: StepRateLimit | None = Field(default=None, description="Shared start-rate limit.")
    concurrency: StepConcurrency | None = Field(default=None, description="Shared running limit.")
    http: HttpStep | None = Field(default=None, description="Make an HTTP request.")
    script: ScriptStep | None = Field(default=None, description="Run a sh, bash or python script.")
    log: LogStep | None = Field(default=None, description="Write a log message.")
    container: ContainerStep | None = Field(default=None, description="Run any container image.")
    slack: SlackStep | None = Field(default=None, description="Post to a Slack incoming webhook.")
    email: EmailStep | None = Field(default=None, description="Send an e-mail over SMTP.")

    @model_validator(mode="after")
    def _exactly_one_type(self) -> Step:
        chosen = [t for t in STEP_TYPES if getattr(self, t) is not None]
        if len(chosen) != 1:
            raise ValueError(
                f"step {self.name!r} must set exactly one of {', '.join(STEP_TYPES)}"
                f" (found {len(chosen)}: {', '.join(chosen) or 'none'})"
            )
        return self

    @property
    def step_type(self) -> str:
        return next(t for t in STEP_TYPES if getattr(self, t) is not None)

    @property
    def dependencies(self) -> list[str]:
        return list(self.depends_on or [])
