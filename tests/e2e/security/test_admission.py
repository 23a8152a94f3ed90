"""The validating admission webhook against a real API server: what the CRD schema cannot
check is rejected at `kubectl apply`, with the message the corpus promises and no leaked CEL
runtime error; every example still applies (server-side dry run, webhooks included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.operator.conftest import Kube

ROOT = Path(__file__).resolve().parents[3]
CORPUS = sorted((ROOT / "tests" / "manifests" / "invalid-admission").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_apply_is_refused_naming_the_field(kube: Kube, cluster: Any, path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ").strip()
    result = cluster.kubectl("apply", "-n", kube.namespace, "-f", str(path), check=False)
    assert result.returncode != 0, f"{path.name} was accepted"
    message = " ".join(result.stderr.split())
    assert "denied the request" in message and expected in message, result.stderr
    assert "evaluating rule" not in message, result.stderr


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_pass_the_webhooks(kube: Kube, cluster: Any, path: Path) -> None:
    result = cluster.kubectl("apply", "--dry-run=server", "-n", kube.namespace,
                             "-f", str(path), check=False)
    assert result.returncode == 0, result.stderr


def test_an_update_that_keeps_an_invalid_spec_is_let_through(kube: Kube, cluster: Any) -> None:
    """Relabelling never depends on validity (a Workflow made invalid by a newer rule can
    still be labelled and deleted); changing the spec to an invalid one is refused."""
    kube.workflow("fine", {"steps": [{"name": "s", "log": {"message": "hi"}}]})
    bad = cluster.kubectl("patch", "-n", kube.namespace, "workflows.taskforge.io/fine",
                          "--type=merge", "-p",
                          '{"spec":{"steps":[{"name":"s","log":{"message":"{{ params.x }}"}}]}}',
                          check=False)
    assert bad.returncode != 0 and "params.x" in bad.stderr, bad.stderr
    cluster.kubectl("label", "-n", kube.namespace, "workflows.taskforge.io/fine", "team=a")
