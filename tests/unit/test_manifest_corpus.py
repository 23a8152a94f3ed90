"""The manifest corpus: what the apiserver rejects, the offline models reject too (and the
examples pass both). tests/e2e/test_crds.py checks the apiserver's side of the same files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from taskforge.api import Workflow, WorkflowRun
from taskforge.api.steps import STEP_TYPES

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "tests" / "manifests" / "invalid").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
MODELS: dict[str, type[BaseModel]] = {"Workflow": Workflow, "WorkflowRun": WorkflowRun}
# Kinds an example may bring along for its steps (Secrets for credentials).
SUPPORTING_KINDS = {("v1", "Secret"), ("v1", "ConfigMap")}
EXPECT = "# expect: "


def expectation(path: Path) -> str:
    """The substring of the apiserver's error that the manifest's first line promises."""
    first = path.read_text().splitlines()[0]
    assert first.startswith(EXPECT), f"{path.name}: the first line must be '{EXPECT}<substring>'"
    return first.removeprefix(EXPECT).strip()


def documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def test_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 30
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_manifest_is_rejected_by_the_models(path: Path) -> None:
    assert expectation(path)
    (doc,) = documents(path)
    assert doc["kind"] in MODELS
    assert doc["metadata"]["name"] == path.stem, "name each manifest after its file"
    with pytest.raises(ValidationError):
        MODELS[doc["kind"]].model_validate(doc)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_accepted_by_the_models(path: Path) -> None:
    docs = documents(path)
    assert any(doc["kind"] in MODELS for doc in docs)
    for doc in docs:
        if doc["kind"] in MODELS:
            MODELS[doc["kind"]].model_validate(doc)
        else:
            assert (doc["apiVersion"], doc["kind"]) in SUPPORTING_KINDS, path.name


def test_example_runs_name_example_workflows() -> None:
    workflows: set[str] = set()
    refs: list[tuple[str, str]] = []
    names: list[tuple[str, str]] = []
    for path in EXAMPLES:
        for doc in documents(path):
            names.append((doc["kind"], doc["metadata"]["name"]))
            if doc["kind"] == "Workflow":
                workflows.add(doc["metadata"]["name"])
            elif doc["kind"] == "WorkflowRun" and "workflowRef" in doc["spec"]:
                refs.append((path.name, doc["spec"]["workflowRef"]["name"]))
    assert len(names) == len(set(names)), "examples must not overwrite each other's objects"
    for file, ref in refs:
        assert ref in workflows, f"{file}: no example defines workflow {ref!r}"


def test_every_step_type_has_an_example() -> None:
    seen: set[str] = set()
    for path in EXAMPLES:
        for doc in documents(path):
            if doc["kind"] == "Workflow":
                spec = Workflow.model_validate(doc).spec
                seen |= {step.step_type for step in spec.all_steps}
    assert seen == set(STEP_TYPES)  # workflow: examples/sub-workflow.yaml
