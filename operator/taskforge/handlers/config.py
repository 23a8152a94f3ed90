"""Operator settings, from the environment (the Helm chart sets them).

`OperatorSettings` is the one place for each variable: its name (spelt out, so that a grep
for it finds it), type, default and doc. pydantic-settings reads and validates them, so a
bad value stops the operator at start-up with the variable named (`SettingsError`), instead
of a hand-written parser's traceback or a silent default. The README's table of them is
generated from these fields (`python -m taskforge.handlers.config`), and a test
(tests/unit/test_operator_settings.py) fails when it drifts. `OperatorConfig` is what the rest of
the operator takes: the same values, shaped for use (JobSettings, a namespace tuple).

The Job TTL accepts `none` or `off` to turn it off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskforge.adapters.archive_records import Retention
from taskforge.adapters.jobs import JobSettings
from taskforge.api.common import ResourceName
from taskforge.api.pod import PodSettings
from taskforge.api.timing import PRIORITY_MAX, PRIORITY_MIN
from taskforge.engine.election import Timing

ADMISSION_MODES = ("off", "local", "service")
RETIRED_PORT_VARIABLES = (
    "TASKFORGE_METRICS_PORT", "TASKFORGE_WEBHOOK_PORT", "TASKFORGE_HEALTH_PORT")
"""Replaced by TASKFORGE_HTTP_PORT (one server); main() warns when one is still set."""


def _off_is_none(value: Any) -> Any:
    """`none`/`off` turn a port or TTL off; an empty variable means the default."""
    if isinstance(value, str) and value.strip().lower() in {"none", "off"}:
        return None
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value



def parse_pod_defaults(text: str) -> PodSettings | None:
    """TASKFORGE_STEP_POD_DEFAULTS: spec.pod's form as JSON, trusted (reserved keys allowed)."""
    if not text.strip():
        return None
    return PodSettings.model_validate_json(text, context={"trusted": True})


def _check_pod_defaults(text: str) -> str:
    try:
        parse_pod_defaults(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise ValueError(f"{where}: {first['msg']}") from None
    return text


class PriorityClassBand(BaseModel):
    """One entry of TASKFORGE_STEP_PRIORITY_CLASSES (the chart's stepPriorityClasses)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
    min_priority: int = Field(alias="minPriority", ge=PRIORITY_MIN, le=PRIORITY_MAX)
    class_name: ResourceName = Field(alias="className")


_BANDS = TypeAdapter(list[PriorityClassBand])


def parse_priority_classes(text: str) -> tuple[tuple[int, str], ...]:
    """TASKFORGE_STEP_PRIORITY_CLASSES: a JSON list of {minPriority, className}."""
    if not text.strip():
        return ()
    bands = _BANDS.validate_json(text)
    floors = [b.min_priority for b in bands]
    if len(set(floors)) != len(floors):
        raise ValueError("two entries have the same minPriority")
    return tuple((b.min_priority, b.class_name) for b in bands)


def _check_priority_classes(text: str) -> str:
    try:
        parse_priority_classes(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise ValueError(f"{where}: {first['msg']}") from None
    return text


class SettingsError(ValueError):
    """A TASKFORGE_* variable with a value the operator cannot use; the text names it."""


class OperatorSettings(BaseSettings):
    """The operator's environment variables (TASKFORGE_<FIELD>)."""

    model_config = SettingsConfigDict(env_ignore_empty=True, frozen=True, extra="ignore")

    executor_image: str = Field(
        validation_alias="TASKFORGE_EXECUTOR_IMAGE", default=JobSettings.executor_image,
        description="Image of the step executor (the http, script and log steps).")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        validation_alias="TASKFORGE_IMAGE_PULL_POLICY", default="IfNotPresent",
        description="imagePullPolicy of the executor's step pods.")
    job_ttl_seconds: Annotated[Annotated[int, Field(ge=0)] | None,
                               BeforeValidator(_off_is_none)] = Field(
        validation_alias="TASKFORGE_JOB_TTL_SECONDS", default=600,
        description="ttlSecondsAfterFinished of step Jobs; `off` keeps them.")
    namespaces: str = Field(
        validation_alias="TASKFORGE_NAMESPACES", default="",
        description="Comma-separated namespaces to watch; empty: the whole cluster.")
    workers: int = Field(
        validation_alias="TASKFORGE_WORKERS", default=8, ge=1,
        description="kopf's concurrent handler workers.")
    http_port: int = Field(
        validation_alias="TASKFORGE_HTTP_PORT", default=8080, ge=1, le=65535,
        description="The one HTTP server: /metrics, /healthz, /readyz and webhook triggers"
        " (POST /hooks/...).")
    log_format: Annotated[Literal["json", "text"], BeforeValidator(_lower)] = Field(
        validation_alias="TASKFORGE_LOG_FORMAT", default="text",
        description="Log lines as `json` (one object a line, with namespace, workflow, run,"
        " step and attempt on lines about a run) or `text`.")
    metrics_workflow_label: bool = Field(
        validation_alias="TASKFORGE_METRICS_WORKFLOW_LABEL", default=True,
        description="Label metrics with the workflow's name; `false` for installations with"
        " very many workflows (the label is then empty, which Prometheus drops).")
    step_events: bool = Field(
        validation_alias="TASKFORGE_STEP_EVENTS", default=True,
        description="A Kubernetes Event on the run per step start and end.")
    status_coalesce_seconds: float = Field(
        validation_alias="TASKFORGE_STATUS_COALESCE_SECONDS", default=3.0, ge=0, le=30,
        description="How long a run's status that only launches steps waits to be written"
        " with the next change (a quick step's start and end then cost one write); a step's"
        " start shows in status at most this late. 0 writes every change at once.")
    admission: Annotated[Literal["off", "local", "service"], BeforeValidator(_lower)] = Field(
        validation_alias="TASKFORGE_ADMISSION", default="off",
        description="The admission webhook that records run creators: off, local or service.")
    admission_port: int = Field(
        validation_alias="TASKFORGE_ADMISSION_PORT", default=9443, ge=1, le=65535,
        description="Port of the admission webhook's server.")
    admission_cert_dir: str = Field(
        validation_alias="TASKFORGE_ADMISSION_CERT_DIR", default="/etc/taskforge/admission",
        description="Directory of the admission webhook's serving certificate.")
    step_pod_defaults: Annotated[str, AfterValidator(_check_pod_defaults)] = Field(
        validation_alias="TASKFORGE_STEP_POD_DEFAULTS", default="",
        description="Step pod settings under every workflow's spec.pod, as JSON in the form of"
        " spec.pod (the chart's stepPodDefaults); may use reserved label and annotation"
        " domains. Not checked against run creators: the admin sets them.")
    step_priority_classes: Annotated[str, AfterValidator(_check_priority_classes)] = Field(
        validation_alias="TASKFORGE_STEP_PRIORITY_CLASSES", default="",
        description="Step pods' priorityClassName by run priority, as a JSON list of"
        " {minPriority, className} (the chart's stepPriorityClasses): the highest band the"
        " run's priority reaches; a class named in spec.pod wins.")
    leader_election: bool = Field(
        validation_alias="TASKFORGE_LEADER_ELECTION", default=True,
        description="Elect a leader through a Lease: only the leader reconciles, schedules"
        " and ships dead letters; every replica serves webhooks. `false`: this one acts.")
    lease_name: str = Field(
        validation_alias="TASKFORGE_LEASE_NAME", default="taskforge-operator",
        min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Name of the leader-election Lease.")
    lease_namespace: str = Field(
        validation_alias="TASKFORGE_LEASE_NAMESPACE", default="",
        description="Namespace of the Lease; empty: the pod's own (else `default`).")
    lease_identity: str = Field(
        validation_alias="TASKFORGE_LEASE_IDENTITY", default="",
        description="This replica's holder identity; empty: host name and a random suffix"
        " (the chart passes the pod's name).")
    lease_duration_seconds: float = Field(
        validation_alias="TASKFORGE_LEASE_DURATION_SECONDS", default=10.0, gt=0, le=300,
        description="How long a standby waits for an unrenewed Lease before taking it over.")
    lease_renew_deadline_seconds: float = Field(
        validation_alias="TASKFORGE_LEASE_RENEW_DEADLINE_SECONDS", default=7.0, gt=0,
        description="A leader that could not renew for this long exits (shorter than the"
        " duration).")
    lease_retry_period_seconds: float = Field(
        validation_alias="TASKFORGE_LEASE_RETRY_PERIOD_SECONDS", default=1.0, gt=0,
        description="How often the leader renews and a standby checks the Lease.")

    archive_url: str = Field(
        validation_alias="TASKFORGE_ARCHIVE_URL", default="", repr=False,
        description="PostgreSQL URL of the run archive (docs/archive.md); empty: no archive."
        " The chart takes it from a Secret (archive.urlSecret).")
    archive_retention_days: int | None = Field(
        validation_alias="TASKFORGE_ARCHIVE_RETENTION_DAYS", default=None, ge=1,
        description="Archived runs older than this many days are deleted; unset: kept.")
    archive_retention_runs: int | None = Field(
        validation_alias="TASKFORGE_ARCHIVE_RETENTION_RUNS", default=None, ge=1,
        description="Archived runs kept per workflow (the newest); unset: all.")
    archive_retention_interval_seconds: float = Field(
        validation_alias="TASKFORGE_ARCHIVE_RETENTION_INTERVAL_SECONDS", default=3600.0, gt=0,
        description="How often the leader enforces the archive's retention.")
    archive_queue_records: int = Field(
        validation_alias="TASKFORGE_ARCHIVE_QUEUE_RECORDS", default=20_000, ge=1,
        description="Archive records held in memory while the database is away; beyond it"
        " new ones are dropped and counted (taskforge_archive_dropped_total).")

    @model_validator(mode="after")
    def _lease_timing(self) -> OperatorSettings:
        problem = Timing(self.lease_duration_seconds, self.lease_renew_deadline_seconds,
                         self.lease_retry_period_seconds).problem()
        if problem is not None:
            raise ValueError(f"TASKFORGE_LEASE_*: {problem}")
        return self

    @classmethod
    def variables(cls) -> dict[str, tuple[Any, str]]:
        """Each variable's name, default and doc, for the README check."""
        return {str(f.validation_alias): (f.default, f.description or "")
                for f in cls.model_fields.values()}


def settings_table() -> str:
    """The README's markdown table of the operator's variables."""
    rows = ["| variable | default | what |", "|---|---|---|"]
    for name, (default, doc) in OperatorSettings.variables().items():
        shown = "(empty)" if default == "" else str(default).lower() if isinstance(
            default, bool) else str(default)
        rows.append(f"| `{name}` | `{shown}` | {doc} |")
    return "\n".join(rows)


def load_settings() -> OperatorSettings:
    """The settings from the environment; a bad value raises SettingsError naming it."""
    try:
        return OperatorSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
            f" (got {e.get('input')!r})" for e in exc.errors())
        raise SettingsError(f"bad operator settings: {problems}") from None


@dataclass(frozen=True)
class ArchiveSettings:
    """The run archive's settings (handlers/archiver.py); None in OperatorConfig: no archive."""

    url: str = field(repr=False)
    queue_records: int = 20_000
    queue_bytes: int = 128 * 1024 * 1024
    retention: Retention = field(default_factory=Retention)
    retention_interval: float = 3600.0


@dataclass(frozen=True)
class OperatorConfig:
    jobs: JobSettings = field(default_factory=JobSettings)
    namespaces: tuple[str, ...] = ()
    workers: int = 8
    http_port: int = 8080
    """The one HTTP server (/metrics, /healthz, /readyz, /hooks); 0 picks a free port."""
    log_format: str = "text"
    metrics_workflow_label: bool = True
    step_events: bool = True
    status_coalesce_seconds: float = 3.0
    """How long a status that only launches steps is held for the next change (held.py)."""
    admission: str = "off"
    """The admission webhook that records run creators: off, local or service (admission.py)."""
    admission_port: int = 9443
    admission_cert_dir: str = "/etc/taskforge/admission"
    leader_election: bool = True
    lease_name: str = "taskforge-operator"
    lease_namespace: str = ""
    lease_identity: str = ""
    lease_timing: Timing = field(default_factory=Timing)
    archive: ArchiveSettings | None = None

    @classmethod
    def from_env(cls) -> OperatorConfig:
        s = load_settings()
        return cls(
            jobs=JobSettings(
                executor_image=s.executor_image,
                image_pull_policy=s.image_pull_policy,
                ttl_seconds_after_finished=s.job_ttl_seconds,
                log_format=s.log_format,
                pod_defaults=parse_pod_defaults(s.step_pod_defaults),
                priority_classes=parse_priority_classes(s.step_priority_classes),
            ),
            namespaces=tuple(n.strip() for n in s.namespaces.split(",") if n.strip()),
            workers=s.workers,
            http_port=s.http_port,
            log_format=s.log_format,
            metrics_workflow_label=s.metrics_workflow_label,
            step_events=s.step_events,
            status_coalesce_seconds=s.status_coalesce_seconds,
            admission=s.admission,
            admission_port=s.admission_port,
            admission_cert_dir=s.admission_cert_dir,
            leader_election=s.leader_election,
            lease_name=s.lease_name,
            lease_namespace=s.lease_namespace,
            lease_identity=s.lease_identity,
            lease_timing=Timing(s.lease_duration_seconds, s.lease_renew_deadline_seconds,
                                s.lease_retry_period_seconds),
            archive=ArchiveSettings(
                url=s.archive_url, queue_records=s.archive_queue_records,
                retention=Retention(s.archive_retention_days, s.archive_retention_runs),
                retention_interval=s.archive_retention_interval_seconds,
            ) if s.archive_url.strip() else None,
        )


if __name__ == "__main__":  # pragma: no cover
    print(settings_table())
