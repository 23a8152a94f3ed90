"""What the cron and webhook triggers share: bounded run names and the WorkflowRun they create.

Both triggers make the run's name from the trigger's facts (the scheduled minute, the delivery
id), so a restarted operator or a redelivered webhook asks for the same name and the API
server's 409 is the lock against a second run.
"""

from __future__ import annotations

import hashlib
from typing import Any

from taskforge import API_VERSION
from taskforge.api.run import TriggerInfo, WorkflowRef, WorkflowRunSpec
from taskforge.engine.naming import LABEL_WORKFLOW, MAX_LABEL, label_value

LABEL_TRIGGER = "taskforge.io/trigger"
"""`schedule` or `webhook` on runs a trigger created, so the scheduler can list its own runs
(CronJob's concurrency policy looks only at the Jobs it created, never at manual ones)."""

_HASH_LEN = 8


def bounded_name(base: str, suffix: str) -> str:
    """`{base}{suffix}` if it fits a 63-character label, else `base` cut short plus a hash of
    the whole `base`: two long workflow names sharing a prefix must not share run names, or
    one workflow's 409 would silently swallow the other's run."""
    if len(base) + len(suffix) <= MAX_LABEL:
        return base + suffix
    digest = hashlib.sha256(base.encode()).hexdigest()[:_HASH_LEN]
    keep = MAX_LABEL - len(suffix) - _HASH_LEN - 1
    return f"{base[:keep].rstrip('-.')}-{digest}{suffix}"


def run_manifest(
    namespace: str,
    workflow: str,
    name: str,
    trigger: TriggerInfo,
    params: dict[str, Any] | None,
) -> dict[str, Any]:
    """The WorkflowRun a trigger creates, built through the API model so it is valid by type."""
    spec = WorkflowRunSpec(workflow_ref=WorkflowRef(name=workflow), params=params, trigger=trigger)
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkflowRun",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL_WORKFLOW: label_value(workflow), LABEL_TRIGGER: trigger.type},
        },
        "spec": spec.to_k8s(),
    }
