"""Approval steps through the real operator, its admission webhook and the CLI (issue 19)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.e2e.operator.conftest import ROOT, Kube, OperatorProcess, step_phases

EXAMPLES = ROOT / "examples"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _condition(run: dict[str, Any]) -> dict[str, Any]:
    conditions = (run.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Succeeded"), {})


def _cli(kube: Kube, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskforge.cli.main", "--kubeconfig", str(kube.kubeconfig),
         "-n", kube.namespace, *args],
        capture_output=True, text=True, timeout=60, check=False)


def _awaiting(kube: Kube, run: str, step: str = "approve") -> dict[str, Any]:
    return kube.wait_run(run, lambda r: step_phases(r).get(step) == "Waiting"
                         and _condition(r).get("reason") == "AwaitingApproval", timeout=60)


def test_example_approval_approved_with_the_cli(kube: Kube, cluster: Any) -> None:
    cluster.kubectl("apply", "-n", kube.namespace, "-f", str(EXAMPLES / "approval.yaml"))
    run = _awaiting(kube, "release-1")
    gate = run["status"]["steps"]["approve"]
    assert gate["message"] == "awaiting approval: Deploy this release to production?"
    assert run["status"]["phase"] == "Running" and "deploy" not in {
        j.metadata.labels.get("taskforge.io/step") for j in kube.jobs("release-1")}
    assert "AwaitingApproval" in kube.event_reasons("release-1", {"AwaitingApproval"})
    done = _cli(kube, "approve", "release-1", "approve", "--reason", "tests are green")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "workflowrun.taskforge.io/release-1 step approve approved"
    final = kube.wait_run("release-1")
    assert final["status"]["phase"] == "Succeeded", json.dumps(final["status"])[:3000]
    record = final["status"]["steps"]["approve"]["approval"]
    assert record["decision"] == "Approved" and record["reason"] == "tests are green"
    assert record["verified"] is True and record["by"]
    entry = final["spec"]["approvals"][0]
    assert entry["user"] == record["by"]  # stamped by the admission webhook
    deploy = final["status"]["steps"]["deploy"]["outputs"]["message"]
    assert deploy == f"deploying, approved by {record['by']}"
    # A second decision, or a change of the first, is refused.
    again = _cli(kube, "reject", "release-1", "approve", "--reason", "changed my mind")
    assert again.returncode == 1 and "already" in again.stderr, again.stderr
    with pytest.raises(ApiException) as refused:
        kube.patch_run("release-1", {"spec": {"approvals": [
            {"step": "approve", "decision": "reject"}]}})
    assert "cannot be changed or withdrawn" in str(refused.value.body)


def test_rejected_with_a_forged_user_fails_the_run_naming_the_real_one(kube: Kube) -> None:
    kube.workflow("gated", {"steps": [
        {"name": "approve", "approval": {"message": "go?"}},
        {"name": "after", "dependsOn": ["approve"], "log": {"message": "x"}}]})
    name = kube.start_run("gated")
    _awaiting(kube, name)
    kube.patch_run(name, {"spec": {"approvals": [
        {"step": "approve", "decision": "reject", "reason": "no", "user": "forged-admin"}]}})
    final = kube.wait_run(name)
    assert final["status"]["phase"] == "Failed"
    gate = final["status"]["steps"]["approve"]
    assert gate["approval"]["decision"] == "Rejected"
    assert gate["approval"]["by"] != "forged-admin" and gate["approval"]["verified"] is True
    assert gate["message"] == f"rejected by {gate['approval']['by']}: no"
    assert step_phases(final)["after"] == "Skipped"


def test_wait_survives_a_kill_and_a_timeout_passed_meanwhile_fires(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    kube.workflow("gated2", {"steps": [
        {"name": "forever", "approval": {}},
        {"name": "quick", "approval": {"timeout": "3s", "onTimeout": "approve"}}]})
    name = kube.start_run("gated2")
    run = _awaiting(kube, name, "forever")
    deadline = _at(run["status"]["steps"]["quick"]["waitUntil"])
    running_operator.kill()
    running_operator.start()
    after = kube.wait_run(name, lambda r: step_phases(r).get("quick") == "Succeeded")
    quick = after["status"]["steps"]["quick"]
    assert quick["approval"]["decision"] == "TimedOut"
    assert _at(quick["finishedAt"]) >= deadline
    assert step_phases(after)["forever"] == "Waiting"  # the restart kept the wait
    done = _cli(kube, "approve", name, "forever")
    assert done.returncode == 0, done.stderr
    assert kube.wait_run(name)["status"]["phase"] == "Succeeded"


def test_timeout_fails_the_step_at_its_instant(kube: Kube) -> None:
    kube.workflow("gated3", {"steps": [{"name": "gate", "approval": {"timeout": "2s"}}]})
    name = kube.start_run("gated3")
    run = _awaiting(kube, name, "gate")
    deadline = _at(run["status"]["steps"]["gate"]["waitUntil"])
    final = kube.wait_run(name)
    gate = final["status"]["steps"]["gate"]
    assert final["status"]["phase"] == "Failed" and gate["failure"] == "TimedOut"
    late = (_at(gate["finishedAt"]) - deadline).total_seconds()
    print(f"approval timeout handled {late:.3f} s after its instant")
    assert 0 <= late < 1.5, late


def test_cli_refuses_a_step_that_is_no_approval(kube: Kube) -> None:
    kube.workflow("plain", {"steps": [{"name": "s", "script": {"source": "sleep 30"}}]})
    name = kube.start_run("plain")
    kube.wait_run(name, lambda r: (r.get("status") or {}).get("phase") == "Running")
    out = _cli(kube, "approve", name, "s")
    assert out.returncode == 1 and "has no approval step 's'" in out.stderr, out.stderr
    kube.patch_run(name, {"spec": {"cancel": True}})
