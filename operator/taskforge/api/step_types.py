"""The step types: what one Job runs (or, for approval and workflow, what the operator does
instead of a Job). A step sets exactly one of them (api/steps.py, `Step`).

Apart from the step's shared fields (dependencies, retry, limits, fan-out), because the
executor validates each config with exactly these models (executor/taskforge_executor/steps):
it needs a step type's fields, never the DAG around it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from taskforge.api.common import (
    EnvVar,
    MapKey,
    Model,
    ResourceName,
    ResourceRequirements,
    SecretKeyRef,
)
from taskforge.api.durations import DURATION_PATTERN, Duration

_TEMPLATES = "Templates like {{ params.x }} and {{ steps.NAME.outputs.KEY }} are rendered first."

class HeaderValueSource(Model):
    """Where a header's value comes from."""

    secret_key_ref: SecretKeyRef = Field(description="Read the header value from a Secret.")


class HttpHeader(Model):
    """A request header: a literal value or one read from a Secret."""

    name: str = Field(min_length=1, max_length=256, description="Header name, e.g. Authorization.")
    value: str | None = Field(
        default=None, max_length=8192, description="Literal value (templates allowed)."
    )
    value_from: HeaderValueSource | None = Field(
        default=None, description="Read the value from a Secret; it is never written to status."
    )


class HttpStep(Model):
    """An HTTP request made by the executor. Outputs: status, the kept headers, the JSON body."""

    # CEL cannot see `json`: the apiserver hides untyped (any JSON) fields from CEL rules. A
    # structural `not: {required: [...]}` can, though its message is less clear.
    model_config = ConfigDict(json_schema_extra={"not": {"required": ["json", "body"]}})

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = Field(
        default="GET", description="HTTP method: GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS."
    )
    url: str = Field(min_length=1, max_length=2048, description=f"http or https URL. {_TEMPLATES}")
    query: dict[MapKey, Annotated[str, StringConstraints(max_length=2048)]] | None = Field(
        default=None,
        max_length=64,
        description="Query parameters to add to the URL (templates allowed).",
    )
    headers: list[HttpHeader] | None = Field(
        default=None, max_length=64, description="Request headers."
    )
    json_body: Any = Field(
        default=None,
        alias="json",
        description="A JSON body, sent with Content-Type application/json; templates are"
        " rendered in its strings. Not together with body. Any JSON: no CRD limit applies,"
        " its size counts toward the run's size (see README, Limits).",
    )
    body: str | None = Field(
        default=None,
        max_length=65536,
        description="A raw body (templates allowed). Not together with json.",
    )
    timeout: Duration = Field(
        default="30s", pattern=DURATION_PATTERN, description="Request timeout, e.g. 30s."
    )
    success_codes: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None,
        max_length=100,
        description="Status codes that count as success; default: any 2xx.",
    )
    response_headers: list[Annotated[str, StringConstraints(max_length=256)]] | None = Field(
        default=None, max_length=100, description="Response headers to keep in the step's outputs."
    )
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate.")

    @model_validator(mode="after")
    def _one_body(self) -> HttpStep:
        if self.json_body is not None and self.body is not None:
            raise ValueError("set at most one of json and body")
        return self


class ScriptStep(Model):
    """A script run by the executor. Outputs: exit code, the tail of stdout, and the JSON object
    the script writes to the file named by $TASKFORGE_RESULT."""

    language: Literal["sh", "bash", "python"] = Field(
        default="sh", description="Interpreter for the source: sh, bash or python."
    )
    source: str = Field(
        min_length=1, max_length=65536, description=f"The script's source. {_TEMPLATES}"
    )
    env: list[EnvVar] | None = Field(
        default=None, max_length=100, description="Environment variables."
    )
    working_dir: str | None = Field(
        default=None, max_length=1024, description="Working directory."
    )


class LogStep(Model):
    """A message written to the step's log (and its outputs)."""

    message: str = Field(min_length=1, max_length=4096, description=f"The message. {_TEMPLATES}")
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level: debug, info, warning or error."
    )


class ContainerStep(Model):
    """Any container image, run like a plain Job (no executor inside)."""

    image: str = Field(
        min_length=1, max_length=512, description="Container image, e.g. python:3.11-slim."
    )
    command: list[Annotated[str, StringConstraints(max_length=4096)]] | None = Field(
        default=None, max_length=32, description="Entrypoint override (the image's by default)."
    )
    args: list[Annotated[str, StringConstraints(max_length=32768)]] | None = Field(
        default=None, max_length=64, description="Arguments (templates allowed)."
    )
    env: list[EnvVar] | None = Field(
        default=None, max_length=100, description="Environment variables."
    )
    working_dir: str | None = Field(
        default=None, max_length=1024, description="Working directory."
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="CPU and memory requests and limits."
    )


class SlackStep(Model):
    """A message posted to a Slack incoming webhook."""

    webhook_url_from: SecretKeyRef = Field(
        description="Secret key holding the Slack incoming-webhook URL."
    )
    text: str | None = Field(
        default=None, max_length=40000, description="Message text (templates allowed)."
    )
    blocks: list[Annotated[dict[str, Any], Field(max_length=32)]] | None = Field(
        default=None,
        max_length=50,
        description="Slack Block Kit blocks (templates allowed). Any JSON inside: its size"
        " counts toward the run's size (see README, Limits).",
    )


class EmailStep(Model):
    """An e-mail sent over SMTP; credentials come from Secrets."""

    host: str = Field(min_length=1, max_length=253, description="SMTP server host.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP server port.")
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls (upgrade a plain connection), tls (implicit TLS) or none.",
    )
    username_from: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the SMTP user name."
    )
    password_from: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the SMTP password."
    )
    from_address: str = Field(
        alias="from", min_length=3, max_length=320, description="Sender address."
    )
    to: list[Annotated[str, StringConstraints(min_length=1, max_length=320)]] = Field(
        min_length=1, max_length=50, description="Recipient addresses (templates allowed)."
    )
    subject: str = Field(min_length=1, max_length=998, description="Subject (templates allowed).")
    body: str = Field(max_length=65536, description="Plain-text body (templates allowed).")


class ApprovalStep(Model):
    """A step that waits, with no Job, until a person approves or rejects it (spec.approvals
    of the run: `taskforge approve RUN STEP`, `taskforge reject RUN STEP --reason ...`)."""

    message: str | None = Field(
        default=None, max_length=4096, description="What the approver is asked, for people."
    )
    timeout: Duration | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="How long to wait for a decision, e.g. 24h (default: no limit).",
    )
    on_timeout: Literal["fail", "approve"] = Field(
        default="fail",
        description="What a timeout means: fail (the step fails, TimedOut) or approve.",
    )


class WorkflowCall(Model):
    """Run another Workflow of the run's namespace as a child WorkflowRun (no Job): the step
    ends with the child, and its outputs are the child's run outputs."""

    name: ResourceName = Field(
        description="Name of a Workflow in the run's namespace (never another namespace)."
    )
    params: dict[MapKey, Any] | None = Field(
        default=None,
        max_length=100,
        description="Parameter values of the child run; templates are rendered in their"
        " strings. Any JSON: its size counts toward the run's size (see README, Limits).",
    )
