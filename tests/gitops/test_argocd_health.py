"""docs/argocd/health.lua, run the way Argo CD runs a health check (Lua 5.1, the object as the
global `obj`, a table {status, message} back) on the statuses the engine writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lupa.lua51 as lua
import pytest

from tests.gitops.samples import Sample, run_samples, workflow_samples

SCRIPT = (Path(__file__).resolve().parents[2] / "docs/argocd/health.lua").read_text()
SAMPLES = run_samples() + workflow_samples()


def health(obj: dict[str, Any]) -> dict[str, str]:
    runtime = lua.LuaRuntime()
    runtime.globals()["obj"] = runtime.table_from(json.loads(json.dumps(obj)), recursive=True)
    result = runtime.execute(SCRIPT)
    return {"status": result["status"], "message": result["message"]}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: f"{s.body['kind']}/{s.name}")
def test_health(sample: Sample) -> None:
    got = health(sample.body)
    assert got["status"] == sample.argocd, got
    assert got["message"]


def test_degraded_says_why() -> None:
    failed = next(s for s in SAMPLES if s.name == "failed").body
    assert "step 'a' failed" in health(failed)["message"]


@pytest.mark.parametrize(("phase", "expected"), [
    ("Succeeded", "Healthy"), ("Failed", "Degraded"), ("Cancelled", "Degraded"),
    ("Running", "Progressing"), ("Pending", "Progressing"),
])
def test_a_status_from_an_older_operator_falls_back_to_the_phase(phase: str, expected: str) -> None:
    obj = {"metadata": {"name": "r", "generation": 1},
           "status": {"phase": phase, "observedGeneration": 1,
                      "conditions": [{"type": "Succeeded", "status": "Unknown"}]}}
    assert health(obj)["status"] == expected
