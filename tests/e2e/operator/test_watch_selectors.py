"""The operator's Job and pod watches are selected by the run label on the API server.

Other pods of the cluster must never reach the operator: kopf's `labels=` handler filter is
client-side, so without the server-side selector every pod event of the cluster was sent,
decoded and dispatched only to be dropped (issue 14). Counted from the operator's own
`taskforge_watch_events_total`, which counts what its watch streams receive.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from taskforge.engine.naming import LABEL_RUN

from tests.e2e.operator.conftest import Kube, OperatorProcess
from tests.e2e.operator.test_metrics import INSTANT, eventually, scrape, value

pytestmark = pytest.mark.local_agent  # the instant image exists only on the local agent

PODS = 10


def _pod_events(op: OperatorProcess) -> float:
    return value(scrape(op), "taskforge_watch_events_total", resource="pods")


def _settled(kube: Kube) -> None:
    """Until no step pod of the cluster is starting, running or terminating: the operator and
    cluster are shared, and earlier tests' cancelled steps (`sleep 30`) end in their own time,
    each ending a few pod events the operator rightly receives."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pods = kube.core.list_pod_for_all_namespaces(label_selector=LABEL_RUN).items
        if not [p for p in pods if p.metadata.deletion_timestamp is not None
                or p.status.phase in ("Pending", "Running")]:
            return
        time.sleep(0.5)


def _quiet(op: OperatorProcess) -> float:
    """The pod-event count once it has not moved for a second (earlier tests' pods settle)."""
    last = _pod_events(op)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _pod_events(op)
        if now == last:
            return now
        last = now
    return last


def _unlabelled_pod(name: str) -> dict[str, Any]:
    """A plain pod, not a step's: the node agent (or a scheduler) updates its status."""
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "c", "image": "busybox", "command": ["true"],
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }


def test_only_step_pods_reach_the_operator(kube: Kube, running_operator: OperatorProcess) -> None:
    kube.workflow("selected", {"steps": [{"name": "s", "container": INSTANT}]})
    before = _quiet(running_operator)
    run = kube.start_run("selected")
    kube.wait_run(run, lambda r: (r.get("status") or {}).get("phase") == "Succeeded")
    assert _pod_events(running_operator) > before, "a step pod's events should arrive"

    _settled(kube)
    before = _quiet(running_operator)
    names = [f"other-{i}" for i in range(PODS)]
    for name in names:
        kube.core.create_namespaced_pod(kube.namespace, _unlabelled_pod(name))

    def updated() -> None:  # each pod was bound and its status written: several events each
        for name in names:
            pod = kube.core.read_namespaced_pod(name, kube.namespace)
            assert pod.status.conditions, name

    eventually(updated, timeout=30)
    time.sleep(1.0)  # a watch event is sent within milliseconds; give it ample time
    # Each unlabelled pod makes at least three events (created, bound, status), so without the
    # selector the count would rise by 3 * PODS or more. It may still rise by a few: the
    # cluster is shared with earlier tests, whose settled step pods may yet be deleted.
    arrived = _pod_events(running_operator) - before
    assert arrived < PODS, f"{arrived} pod events arrived: unlabelled pods reached the operator"
