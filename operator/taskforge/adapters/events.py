"""Kubernetes Events on runs and workflows (what `kubectl describe` shows)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from taskforge.adapters import kube_async
from taskforge.adapters.kube import discard, request

COMPONENT = "taskforge-operator"


def _micro(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def post_event(
    involved: dict[str, Any], type_: str, reason: str, message: str, now: datetime
) -> None:
    """Create one core/v1 Event; a failure to post is logged by the caller, never fatal."""
    namespace, body = event_body(involved, type_, reason, message, now)
    try:
        # By path (no model validation of the body), drained so its connection goes back
        # to the pool (adapters/kube.py).
        discard(request("POST", f"/api/v1/namespaces/{namespace}/events", body=body))
    except ApiException as exc:
        if exc.status not in (409, 404):
            raise


async def post_event_async(
    involved: dict[str, Any], type_: str, reason: str, message: str, now: datetime
) -> None:
    """post_event on the event loop's session (adapters/kube_async.py: the hot path)."""
    namespace, body = event_body(involved, type_, reason, message, now)
    try:
        await kube_async.request("POST", f"/api/v1/namespaces/{namespace}/events", body=body)
    except ApiException as exc:
        if exc.status not in (409, 404):
            raise


def event_body(
    involved: dict[str, Any], type_: str, reason: str, message: str, now: datetime
) -> tuple[str, dict[str, Any]]:
    """The Event's namespace and body (its name is derived, so a retry makes no second)."""
    meta = involved.get("metadata") or {}
    namespace = meta.get("namespace", "default")
    digest = hashlib.sha256(f"{meta.get('uid')}{reason}{message}{now}".encode()).hexdigest()[:10]
    name = f"{meta.get('name', 'object')[:200]}.{digest}"
    ts = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": namespace,
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": type_,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "eventTime": _micro(now),
        "action": reason,
        "count": 1,
    }
    return namespace, body
