"""Shared helpers of the CLI tests (test_cli_*.py): the `taskforge` CLI against a real
apiserver (no operator).

What the operator would write into `WorkflowRun.status` is written by the tests,
through the status subresource: that is test data standing in for progress, so `get`,
`list`, `watch` and `retry` can be checked without running any step. `logs` reads real
pods: plain Jobs with the step labels, run by the cluster's node (the local agent, or any
node that can pull python:3.11-slim). Most commands run in-process through typer's
CliRunner (fast); a few go through the installed console script to check what a person
sees: exit codes, one-line errors, no tracebacks.

Not a test module. Each test module defines the two fixtures it needs from these parts::

    @pytest.fixture(scope="module")
    def crds(cluster: ClusterUnderTest) -> ClusterUnderTest:
        return install_crds(cluster)


    @pytest.fixture
    def cli(crds: ClusterUnderTest, namespace: str) -> Iterator[Cli]:
        yield pipeline_cli(crds, namespace)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from localcluster.testing import ClusterUnderTest
from taskforge.cli.main import app
from typer.testing import CliRunner, Result

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "taskforge"
CRD_NAMES = ("workflows.taskforge.io", "workflowruns.taskforge.io")

WORKFLOW = """\
apiVersion: taskforge.io/v1alpha1
kind: Workflow
metadata:
  name: pipeline
spec:
  params:
    - {name: num, type: integer, default: 1}
    - {name: version, type: string}
    - {name: who, type: string, required: true}
  steps:
    - name: report
      dependsOn: [transform]
      log: {message: "done {{ params.who }}"}
    - name: transform
      dependsOn: [fetch]
      log: {message: transform}
    - name: fetch
      http: {url: "https://example.com/items"}
  finally:
    - name: cleanup
      log: {message: bye}
"""


def iso(delta: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def eventually(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def install_crds(cluster: ClusterUnderTest) -> ClusterUnderTest:
    """The CRDs of crds/, applied and served (what the `crds` fixtures return)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))

    def served() -> bool:
        wait = cluster.kubectl("wait", "--for=condition=established", "--timeout=30s",
                               *(f"crd/{n}" for n in CRD_NAMES), check=False)
        return wait.returncode == 0 and cluster.kubectl(
            "get", "workflowruns.taskforge.io", "-A", check=False
        ).returncode == 0

    eventually(served, what="the CRDs to be served")
    return cluster


class Cli:
    """The CLI bound to one cluster and namespace, plus test-data helpers."""

    def __init__(self, cluster: ClusterUnderTest, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def __call__(self, *args: str, ns: bool = True, input: str | None = None) -> Result:
        argv = ["--kubeconfig", str(self.cluster.kubeconfig)]
        argv += ["-n", self.namespace] if ns else []
        result = CliRunner().invoke(app, [*argv, *args], input=input, env={"COLUMNS": "200"})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def script(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """The installed console script, as a person runs it."""
        argv = [str(CLI), "--kubeconfig", str(self.cluster.kubeconfig), "-n", self.namespace]
        return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout,
                              check=False, env={**os.environ, "COLUMNS": "200"})

    def popen(self, *args: str) -> subprocess.Popen[str]:
        argv = [str(CLI), "--kubeconfig", str(self.cluster.kubeconfig), "-n", self.namespace]
        return subprocess.Popen([*argv, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "COLUMNS": "200"})

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.cluster.kubectl(*args, "-n", self.namespace, input=input).stdout

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    def run_object(self, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", "workflowrun", name, "-o", "json")))

    def set_status(self, name: str, status: dict[str, Any]) -> None:
        """What the operator would write: a merge patch of the status subresource."""
        self.kubectl("patch", "workflowrun", name, "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": status}))

    def new_run(self, labelled: bool = True, **spec: Any) -> str:
        """A run of `pipeline` (params who=me) unless `spec` says otherwise; None drops a key.
        `labelled=False` makes it as kubectl or a GitOps tool would: no label at all."""
        fields = {"workflowRef": {"name": "pipeline"}, "params": {"who": "me"}, **spec}
        meta: dict[str, Any] = {"generateName": "pipeline-"}
        if labelled:
            meta["labels"] = {"taskforge.io/workflow": "pipeline"}
        body = {
            "apiVersion": "taskforge.io/v1alpha1", "kind": "WorkflowRun", "metadata": meta,
            "spec": {k: v for k, v in fields.items() if v is not None},
        }
        out = self.kubectl("create", "-f", "-", "-o", "name", input=json.dumps(body))
        return out.strip().split("/")[-1]


def pipeline_cli(cluster: ClusterUnderTest, namespace: str) -> Cli:
    """The CLI bound to `namespace`, with the `pipeline` Workflow applied there."""
    helper = Cli(cluster, namespace)
    helper.apply(WORKFLOW)
    return helper


def failed_status(now: str) -> dict[str, Any]:
    """A run where fetch succeeded, transform failed after retries, report was skipped."""
    return {
        "phase": "Failed", "progress": "4/4", "startedAt": iso(-90), "finishedAt": now,
        "message": "step transform failed",
        "conditions": [{"type": "Succeeded", "status": "False", "reason": "StepFailed",
                        "message": "step transform failed", "lastTransitionTime": now}],
        "steps": {
            "fetch": {"phase": "Succeeded", "attempts": 1, "exitCode": 0,
                      "startedAt": iso(-90), "finishedAt": iso(-80),
                      "outputs": {"status": 200, "body": {"id": 42}}},
            "transform": {"phase": "Failed", "attempts": 3, "exitCode": 1, "failure": "Failed",
                          "message": "script exited 1", "startedAt": iso(-80),
                          "finishedAt": now},
            "report": {"phase": "Skipped"},
            "cleanup": {"phase": "Succeeded", "attempts": 1, "exitCode": 0},
        },
    }
