"""What the CRD schema cannot check is rejected at apply by the operator's validating admission
webhook, and `taskforge validate` says the same thing offline: one function, two callers.

The corpus `tests/manifests/invalid-admission/` holds manifests the models (and so the CRD
schema) accept, each with the message the webhook must give on its first line.
tests/e2e/security/test_admission.py applies the same files to a real API server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from taskforge.api import Workflow, WorkflowRun
from taskforge.handlers.admission import spec_problems

from tests.unit.cli_kit import run_validate

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "tests" / "manifests" / "invalid-admission").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
EXPECT = "# expect: "


def expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith(EXPECT), path.name
    return first.removeprefix(EXPECT).strip()


def spec_of(doc: dict[str, Any]) -> tuple[str, Any]:
    if doc["kind"] == "Workflow":
        return "spec", doc["spec"]
    return "spec.workflowSpec", doc["spec"]["workflowSpec"]


def test_corpus_covers_every_kind_of_check() -> None:
    assert len(CORPUS) >= 10


GRAPH = {"depends-on-unknown-step", "finally-depends-on-unknown-step",
         "run-inline-depends-on-unknown", "step-names-duplicate-in-finally"}
"""Graph errors the models also reject (offline `validate` sees them); every other case passes
the models, hence the CRD schema, and only the webhook can refuse it."""


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_the_webhook_check_rejects_it(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert doc["metadata"]["name"] == path.stem
    model = {"Workflow": Workflow, "WorkflowRun": WorkflowRun}[doc["kind"]]
    if path.stem in GRAPH:
        with pytest.raises(ValidationError):
            model.model_validate(doc)
    else:
        model.model_validate(doc)
    field, spec = spec_of(doc)
    problems = [f"{field}.{p.removeprefix('spec.')}" for p in spec_problems(spec)]
    assert any(expectation(path) in p for p in problems), problems
    assert not any("evaluating rule" in p or "CEL" in p for p in problems)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_taskforge_validate_gives_the_same_message(path: Path) -> None:
    """The message is the same; the CLI may point at a finer field (a cycle at the first
    step's dependsOn) and adds the file and line."""
    code, output = run_validate(path)
    assert code == 1, output
    message = expectation(path).split(": ", 1)[1]
    assert message in " ".join(output.split()), output


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_passes_the_webhook_check(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] == "Workflow":
            assert spec_problems(doc["spec"]) == []
        elif doc and doc["kind"] == "WorkflowRun" and doc["spec"].get("workflowSpec"):
            assert spec_problems(doc["spec"]["workflowSpec"]) == []
