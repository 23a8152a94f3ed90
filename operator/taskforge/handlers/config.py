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


@dataclass(frozen=True)
class OperatorConfig:
    jobs: JobSettings = field(default_factory=JobSettings)
    namespaces: tuple[str, ...] = ()
    workers: int = 8
    metrics_port: int | None = 8080
    webhook_port: int | None = 8081
    health_port: int | None = 8082
    step_events: bool = True

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
        )
