"""A child run of a workflow step acts for its parent's authority, never for the author of
the Workflow it calls: a tenant who may only create runs cannot reach a Secret through a
Workflow an admin wrote (whose own runs, by cron or webhook, would act for that admin)."""

from __future__ import annotations

import json
from typing import Any

from taskforge.engine.subflow import CHAIN_ANNOTATION

from tests.e2e.operator.conftest import Kube, OperatorProcess
from tests.e2e.security.test_confused_deputy import (  # noqa: F401 - the fixture
    ATTACK,
    SECRET_VALUE,
    _apply,
    _run,
    tenant,
)


def test_child_run_uses_the_parents_authority(
    kube: Kube, cluster: Any, tenant: str, running_operator: OperatorProcess  # noqa: F811
) -> None:
    # Written by the admin (kubectl's own user): its last writer may read the Secret.
    kube.workflow("steal", ATTACK)
    kube.workflow("caller", {"steps": [{"name": "call", "workflow": {"name": "steal"}}]})
    _apply(kube, cluster, _run("via-child", {"workflowRef": {"name": "caller"}}), user=tenant)
    run = kube.wait_run("via-child", timeout=90)
    assert run["status"]["phase"] == "Failed", run["status"]
    child_name = run["status"]["steps"]["call"]["childRun"]
    child = kube.run(child_name)
    condition = next(c for c in child["status"]["conditions"] if c["type"] == "Succeeded")
    assert condition["reason"] == "Forbidden", condition
    assert f"creator {tenant!r}" in child["status"]["message"]
    assert "through parent run 'via-child'" in child["status"]["message"]
    assert kube.jobs(child_name) == []
    assert SECRET_VALUE not in json.dumps(child) + json.dumps(run)
    assert "may not get secrets/db" in run["status"]["steps"]["call"]["message"]


def test_a_child_runs_call_chain_cannot_be_changed(kube: Kube) -> None:
    """The chain counts the child's depth: an update that shortens or removes it is undone."""
    kube.workflow("leaf", {"steps": [{"name": "s", "log": {"message": "hi"}}]})
    kube.workflow("root", {"steps": [{"name": "call", "workflow": {"name": "leaf"}}]})
    name = kube.start_run("root")
    run = kube.wait_run(name, timeout=60)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    child = run["status"]["steps"]["call"]["childRun"]
    recorded = kube.run(child)["metadata"]["annotations"][CHAIN_ANNOTATION]
    assert recorded == '["root"]'
    for forged in ("[]", None):
        kube.patch_run(child, {"metadata": {"annotations": {CHAIN_ANNOTATION: forged}}})
        assert kube.run(child)["metadata"]["annotations"][CHAIN_ANNOTATION] == recorded
