"""Operator settings, from the environment (the Helm chart sets them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from taskforge.adapters.jobs import JobSettings


def _int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"none", "off"}:
        return None
    return int(raw)


ADMISSION_MODES = ("off", "local", "service")


def _admission_mode() -> str:
    mode = os.environ.get("TASKFORGE_ADMISSION", "off").strip().lower() or "off"
    if mode not in ADMISSION_MODES:
        raise ValueError(
            f"TASKFORGE_ADMISSION={mode!r}: expected one of {', '.join(ADMISSION_MODES)}"
        )
    return mode


@dataclass(frozen=True)
class OperatorConfig:
    jobs: JobSettings = field(default_factory=JobSettings)
    namespaces: tuple[str, ...] = ()
    workers: int = 8
    metrics_port: int | None = 8080
    webhook_port: int | None = 8081
    health_port: int | None = 8082
    step_events: bool = True
    admission: str = "off"
    """The admission webhook that records run creators: off, local or service (admission.py)."""
    admission_port: int = 9443
    admission_cert_dir: str = "/etc/taskforge/admission"

    @classmethod
    def from_env(cls) -> OperatorConfig:
        jobs = JobSettings(
            executor_image=os.environ.get(
                "TASKFORGE_EXECUTOR_IMAGE", JobSettings.executor_image
            ),
            image_pull_policy=os.environ.get("TASKFORGE_IMAGE_PULL_POLICY", "IfNotPresent"),
            ttl_seconds_after_finished=_int("TASKFORGE_JOB_TTL_SECONDS", 600),
        )
        namespaces = tuple(
            n.strip() for n in os.environ.get("TASKFORGE_NAMESPACES", "").split(",") if n.strip()
        )
        return cls(
            jobs=jobs,
            namespaces=namespaces,
            workers=_int("TASKFORGE_WORKERS", 8) or 8,
            metrics_port=_int("TASKFORGE_METRICS_PORT", 8080),
            webhook_port=_int("TASKFORGE_WEBHOOK_PORT", 8081),
            health_port=_int("TASKFORGE_HEALTH_PORT", 8082),
            step_events=os.environ.get("TASKFORGE_STEP_EVENTS", "true").lower() != "false",
            admission=_admission_mode(),
            admission_port=_int("TASKFORGE_ADMISSION_PORT", 9443) or 9443,
            admission_cert_dir=os.environ.get(
                "TASKFORGE_ADMISSION_CERT_DIR", "/etc/taskforge/admission"
            ),
        )
