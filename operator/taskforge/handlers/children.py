"""Child runs of workflow steps (engine/subflow.py): what the cache says, and the two calls.

The engine names a child deterministically; here the cache is read under that name only (no
scan of every run), a run of that name is adopted only if its controller owner is this run,
and the calls are idempotent: creating our own child again (409) and cancelling a missing
one (404) are both done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from taskforge import API_VERSION
from taskforge.adapters import kube
from taskforge.api.steps import Step
from taskforge.engine.actions import CancelRun, CreateRun
from taskforge.engine.facts import ObservedChild
from taskforge.engine.subflow import CHAIN_ANNOTATION, chain_annotation, child_runs, parse_chain
from taskforge.handlers.store import Key, Store

RUNS = "workflowruns"


def _owner(body: dict[str, Any]) -> dict[str, Any] | None:
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "WorkflowRun" and ref.get("controller"):
            return dict(ref)
    return None


def parent_of(body: dict[str, Any]) -> str | None:
    """The parent run's name of a child run (its controller owner), else None."""
    owner = _owner(body)
    return str(owner["name"]) if owner and owner.get("name") else None


def owner_uid(body: dict[str, Any]) -> str | None:
    owner = _owner(body)
    return str(owner["uid"]) if owner and owner.get("uid") else None


def lineage_of(body: dict[str, Any]) -> tuple[str, ...]:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return parse_chain(annotations.get(CHAIN_ANNOTATION))


def observe_children(
    store: Store, key: Key, uid: str, steps: Iterable[Step]
) -> dict[str, ObservedChild]:
    out: dict[str, ObservedChild] = {}
    for step, name in child_runs(steps, key[1]).items():
        body = store.run((key[0], name))
        deleted = False
        if body is None:
            body = store.gone_child((key[0], name))  # deleted lately: never create it again
            if body is None:
                continue
            deleted = True
        owner = _owner(body)
        status = body.get("status") or {}
        outputs = status.get("outputs")
        out[step] = ObservedChild(
            name=name,
            owned=bool(owner and owner.get("uid") == uid),
            phase=status.get("phase"),
            message=status.get("message"),
            outputs=outputs if isinstance(outputs, dict) else None,
            deleted=deleted,
        )
    return out


def child_manifest(action: CreateRun, namespace: str, parent: str, uid: str) -> dict[str, Any]:
    """The child WorkflowRun: same namespace, owned by the parent, its call chain recorded.

    No spec.trigger: a run without one is never deleted by its Workflow's history limits
    (unless includeApplied), so a finished child stays until its parent reads it and goes
    with the parent."""
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkflowRun",
        "metadata": {
            "name": action.run_name,
            "namespace": namespace,
            "labels": dict(action.labels),
            "annotations": {CHAIN_ANNOTATION: chain_annotation(action.lineage)},
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": "WorkflowRun", "name": parent, "uid": uid,
                "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": {"workflowRef": {"name": action.workflow},
                 **({"params": action.params} if action.params else {})},
    }


def _create(namespace: str, manifest: dict[str, Any]) -> None:
    try:
        kube.create_object(RUNS, namespace, manifest)
    except Exception as exc:
        if not kube.is_status(exc, 409):  # ours, from an earlier plan: the engine checks
            raise


def _cancel(namespace: str, name: str) -> None:
    try:
        kube.discard(kube.request(
            "PATCH", f"/apis/taskforge.io/v1alpha1/namespaces/{namespace}/{RUNS}/{name}",
            body={"spec": {"cancel": True}}, content_type="application/merge-patch+json"))
    except Exception as exc:
        if not kube.is_status(exc, 404):
            raise


async def apply(action: CreateRun | CancelRun, key: Key, uid: str) -> None:
    if isinstance(action, CreateRun):
        manifest = child_manifest(action, key[0], key[1], uid)
        await asyncio.to_thread(_create, key[0], manifest)
    else:
        await asyncio.to_thread(_cancel, key[0], action.run_name)
