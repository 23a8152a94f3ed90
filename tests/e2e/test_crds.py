"""The CRDs against a real apiserver: they install, reject every manifest of the invalid corpus
with a message naming the field, accept every example, and document their fields.

Needs only an apiserver (no operator, no node agent): the session fixture `cluster` and the
function fixture `namespace` come from tests/e2e/conftest.py.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
INVALID = sorted((ROOT / "tests" / "manifests" / "invalid").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CRD_NAMES = ("workflows.taskforge.io", "workflowruns.taskforge.io")
API_VERSION = "taskforge.io/v1alpha1"
EXPECT = "# expect: "


class Cluster(Protocol):
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...


def _expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith(EXPECT), f"{path.name}: first line must be '{EXPECT}<substring>'"
    return first.removeprefix(EXPECT).strip()


Probe = Callable[[], "subprocess.CompletedProcess[str] | None"]


def _eventually(check: Probe, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Retry `check` until it returns a process rather than None."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
    """The CRDs from crds/, installed (or updated) and established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))

    def established() -> subprocess.CompletedProcess[str] | None:
        # `kubectl wait` fails outright, rather than waiting, while a new CRD has no conditions.
        wait = ["wait", "--for=condition=established", "--timeout=30s"]
        proc = cluster.kubectl(*wait, *(f"crd/{n}" for n in CRD_NAMES), check=False)
        if proc.returncode:
            return None
        proc = cluster.kubectl("get", "workflows.taskforge.io", "-A", check=False)
        return proc if proc.returncode == 0 else None

    _eventually(established, timeout=60)
    return cluster


def test_crds_install_idempotently(crds: Cluster) -> None:
    again = crds.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    assert "serverside-applied" in again.stdout
    for name in CRD_NAMES:
        out = crds.kubectl("get", "crd", name, "-o", "json").stdout
        crd = json.loads(out)
        established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert established.get("Established") == "True", name
        assert established.get("NamesAccepted") == "True", name
        assert crd["status"]["acceptedNames"]["categories"] == ["taskforge"]


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_manifest_is_rejected(crds: Cluster, namespace: str, path: Path) -> None:
    expected = _expectation(path)
    proc = crds.kubectl("apply", "-n", namespace, "-f", str(path), check=False)
    assert proc.returncode != 0, f"{path.name} was accepted:\n{proc.stdout}"
    assert expected in proc.stderr, f"{path.name}: {expected!r} not in:\n{proc.stderr}"
    # A CEL rule that fails at run time says "evaluating rule"; users must never see that.
    assert "evaluating rule" not in proc.stderr and "insert failed" not in proc.stderr, (
        f"{path.name} leaked a CEL runtime error:\n{proc.stderr}")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_applies(crds: Cluster, namespace: str, path: Path) -> None:
    # Server-side dry run: full validation and admission, without starting runs in case an
    # operator watches this cluster (the examples call Slack, SMTP and the internet).
    proc = crds.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "(server dry run)" in proc.stdout


def test_defaults_short_names_and_columns(crds: Cluster, namespace: str) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples" / "hello.yaml"))
    workflow = json.loads(crds.kubectl("get", "-n", namespace, "tfw", "hello", "-o", "json").stdout)
    greet, count = workflow["spec"]["steps"]
    assert greet["log"]["level"] == "info"  # defaults come from the models
    assert greet["continueOnFailure"] is False
    assert count["script"]["language"] == "sh"

    table = crds.kubectl("get", "-n", namespace, "tfwf").stdout.splitlines()[0].split()
    assert table == ["NAME", "STEPS", "SCHEDULE", "LAST", "RUN", "VALID", "AGE"]
    table = crds.kubectl("get", "-n", namespace, "tfrun").stdout.splitlines()[0].split()
    assert table == ["NAME", "WORKFLOW", "PHASE", "PROGRESS", "DURATION", "AGE"]
    listed = crds.kubectl("get", "-n", namespace, "taskforge", "-o", "name").stdout.split()
    assert "workflow.taskforge.io/hello" in listed
    assert "workflowrun.taskforge.io/hello-1" in listed
    by_tfr = crds.kubectl("get", "-n", namespace, "tfr", "hello-1", "-o", "name").stdout.strip()
    assert by_tfr == "workflowrun.taskforge.io/hello-1"


def _inline_run(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": API_VERSION,
            "kind": "WorkflowRun",
            "metadata": {"name": name},
            "spec": {"workflowSpec": {"steps": [{"name": "say", "log": {"message": "hi"}}]}},
        }
    )


def test_cancel_cannot_be_undone(crds: Cluster, namespace: str) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=_inline_run("cancel-me"))
    patch = ["patch", "-n", namespace, "workflowrun", "cancel-me", "--type=merge", "-p"]
    crds.kubectl(*patch, '{"spec": {"cancel": true}}')
    undo = crds.kubectl(*patch, '{"spec": {"cancel": false}}', check=False)
    assert undo.returncode != 0
    assert "spec.cancel: Invalid value: false: cancel cannot be set back to false" in undo.stderr
    crds.kubectl(*patch, '{"spec": {"cancel": true}}')  # setting it again is fine


def test_status_is_a_subresource(crds: Cluster, namespace: str) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=_inline_run("status-probe"))
    patch = ["patch", "-n", namespace, "workflowrun", "status-probe", "--type=merge", "-p"]
    crds.kubectl(*patch, '{"status": {"message": "written through the main resource"}}')
    run = json.loads(
        crds.kubectl("get", "-n", namespace, "tfr", "status-probe", "-o", "json").stdout
    )
    assert run.get("status", {}).get("message") != "written through the main resource"


def test_large_workflow_fits_the_cel_budget(crds: Cluster, namespace: str) -> None:
    """2,000 steps with long names and dependencies, 100 finally steps: the CEL rules must stay
    within the apiserver's runtime cost budget (a failure names the rule)."""
    names = [f"step-{i:04d}-{'x' * 30}" for i in range(2000)]
    steps = [
        {"name": n, "log": {"message": "hi"}, "dependsOn": names[max(0, i - 3) : i]}
        for i, n in enumerate(names)
    ]
    steps[0].pop("dependsOn")
    final = [
        {"name": f"final-{i:03d}", "log": {"message": "bye"}, "dependsOn": [names[-1]]}
        for i in range(100)
    ]
    doc = {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {"name": "large"},
        "spec": {"steps": steps, "finally": final},
    }
    proc = crds.kubectl(
        "apply", "--server-side", "--dry-run=server", "-n", namespace, "-f", "-",
        input=json.dumps(doc), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[:2000]


@pytest.mark.parametrize(
    ("field", "wanted"),
    [
        ("workflow.spec.steps", ["dependsOn", "Names of steps that must finish", "retry"]),
        ("workflowrun.spec.cancel", ["Set true to cancel the run"]),
        ("workflowrun.status.steps", ["phase", "nextAttemptAt"]),
    ],
)
def test_explain_shows_field_docs(crds: Cluster, field: str, wanted: list[str]) -> None:
    def explained() -> subprocess.CompletedProcess[str] | None:
        # The OpenAPI document is published a moment after the CRD is established.
        args = ["explain", field, f"--api-version={API_VERSION}"]
        proc = crds.kubectl(*args, check=False)
        return proc if proc.returncode == 0 and wanted[0] in proc.stdout else None

    out = _eventually(explained).stdout
    for text in wanted:
        assert text in out, f"kubectl explain {field}: {text!r} missing:\n{out}"
