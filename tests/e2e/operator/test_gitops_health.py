"""GitOps health end to end (issue 15 item 4): kstatus conditions on real objects, kubectl wait
--for=condition=Completed on a failure, kstatus.Compute and the Argo CD Lua check on what the API
server returns, and history cleanup that leaves applied (GitOps) runs alone."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.e2e.operator.conftest import Kube
from tests.gitops.test_argocd_health import health
from tests.gitops.test_kstatus import kstatus


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or ()}


def test_completed_returns_for_a_failure_and_kstatus_says_failed(kube: Kube, cluster: Any) -> None:
    kube.workflow("breaks", {"steps": [{"name": "s", "script": {"source": "exit 2"}}]})
    name = kube.start_run("breaks")
    started = time.monotonic()
    cluster.kubectl("wait", "-n", kube.namespace, "--for=condition=Completed", "--timeout=60s",
                    f"workflowrun/{name}")
    assert time.monotonic() - started < 60
    run = kube.run(name)
    assert run["status"]["phase"] == "Failed"
    assert conditions(run) == {"Succeeded": "False", "Ready": "False", "Reconciling": "False",
                               "Stalled": "True", "Completed": "True"}
    for c in run["status"]["conditions"]:
        assert c["observedGeneration"] == run["metadata"]["generation"]
    workflow = kube.get_workflow("breaks")
    assert conditions(workflow)["Ready"] == "True"
    assert [v["status"] for v in kstatus([run, workflow])] == ["Failed", "Current"]
    assert health(run)["status"] == "Degraded" and health(workflow)["status"] == "Healthy"


def test_a_run_of_a_missing_workflow_is_stalled(kube: Kube, cluster: Any) -> None:
    name = kube.start_run("not-there")
    cluster.kubectl("wait", "-n", kube.namespace, "--for=condition=Stalled", "--timeout=30s",
                    f"workflowrun/{name}")
    run = kube.run(name)
    assert run["status"]["phase"] == "Pending"
    assert conditions(run)["Completed"] == "False"
    assert kstatus([run])[0]["status"] == "Failed"
    assert health(run)["status"] == "Degraded"


def test_history_deletes_only_the_runs_taskforge_created(kube: Kube) -> None:
    kube.workflow("kept", {"steps": [{"name": "s", "log": {"message": "hi"}}],
                           "history": {"successfulRuns": 0}})
    applied = kube.start_run("kept")  # as kubectl or a GitOps tool applies it: no spec.trigger
    triggered = f"kept-cli-{uuid.uuid4().hex[:6]}"
    kube.apply({"apiVersion": "taskforge.io/v1alpha1", "kind": "WorkflowRun",
                "metadata": {"name": triggered},
                "spec": {"workflowRef": {"name": "kept"}, "trigger": {"type": "manual"}}})
    kube.wait_run(applied)
    deadline = time.monotonic() + 60
    names: set[str] = {triggered}
    while time.monotonic() < deadline:
        items = kube.custom.list_namespaced_custom_object(
            "taskforge.io", "v1alpha1", kube.namespace, "workflowruns")["items"]
        names = {i["metadata"]["name"] for i in items}
        if triggered not in names:
            break
        time.sleep(0.3)
    assert triggered not in names, "the CLI-style run was not deleted by the history limit"
    time.sleep(2)  # another cleanup pass, if one were to delete it, has had its chance
    assert kube.run(applied)["status"]["phase"] == "Succeeded"
