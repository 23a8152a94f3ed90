"""The leader-election Lease (`coordination.k8s.io/v1`): read, create, conditional replace.

Plain JSON through the shared client (`kube.api_client()`), as everywhere else. A replace
carries the resourceVersion that was read, so the API server refuses it with 409 when anyone
wrote the Lease in between: that refusal is what makes the election safe (`None` here).
Every call takes a timeout, so a hung connection cannot hold a leader past its renew deadline.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client

from taskforge.adapters import kube
from taskforge.engine.election import LeaseRecord

_MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _stamp(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime(_MICRO) if value is not None else None


def record_of(body: dict[str, Any]) -> LeaseRecord:
    """A Lease object as the election reads it; a hostile or partial spec reads as free."""
    spec = body.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    transitions = spec.get("leaseTransitions")
    holder = spec.get("holderIdentity")
    return LeaseRecord(
        holder=str(holder) if holder else None,
        duration_seconds=duration if isinstance(duration, int) and duration > 0 else None,
        acquire_time=_time(spec.get("acquireTime")),
        renew_time=_time(spec.get("renewTime")),
        transitions=transitions if isinstance(transitions, int) and transitions >= 0 else 0,
        resource_version=(body.get("metadata") or {}).get("resourceVersion"),
    )


def body_of(name: str, record: LeaseRecord) -> dict[str, Any]:
    """The Lease object for `record` (with its resourceVersion, when it has one)."""
    metadata: dict[str, Any] = {"name": name}
    if record.resource_version:
        metadata["resourceVersion"] = record.resource_version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.duration_seconds,
            "acquireTime": _stamp(record.acquire_time),
            "renewTime": _stamp(record.renew_time),
            "leaseTransitions": record.transitions,
        },
    }


def _api() -> client.CoordinationV1Api:
    return client.CoordinationV1Api(kube.api_client())


def read(namespace: str, name: str, timeout: float) -> LeaseRecord | None:
    """The Lease, or None when there is none (any other error raises)."""
    try:
        response = _api().read_namespaced_lease(
            name, namespace, _preload_content=False, _request_timeout=timeout)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return record_of(kube.read_body(response))


def create(namespace: str, name: str, record: LeaseRecord, timeout: float) -> LeaseRecord | None:
    """Create the Lease holding `record`; None when another candidate created it first."""
    try:
        response = _api().create_namespaced_lease(
            namespace, cast(Any, body_of(name, record)), field_manager=kube.FIELD_MANAGER,
            _preload_content=False, _request_timeout=timeout)
    except client.ApiException as exc:
        if exc.status == 409:
            return None
        raise
    return record_of(kube.read_body(response))


def replace(namespace: str, name: str, record: LeaseRecord, timeout: float) -> LeaseRecord | None:
    """Write `record` if the Lease is still at `record.resource_version`; None on a conflict."""
    try:
        response = _api().replace_namespaced_lease(
            name, namespace, cast(Any, body_of(name, record)), field_manager=kube.FIELD_MANAGER,
            _preload_content=False, _request_timeout=timeout)
    except client.ApiException as exc:
        if exc.status in (409, 404):
            return None
        raise
    return record_of(kube.read_body(response))
