"""kstatus (sigs.k8s.io/cli-utils v0.37.2, built from its Go module by hack/build-kstatus.sh)
judges the statuses the engine writes: the verdict Flux, kpt and Argo CD's kstatus checks give.

The table (also in docs/gitops.md): Pending on limits InProgress, Pending on a missing or invalid
Workflow Failed, Running InProgress, Succeeded Current, Failed Failed, Cancelled Failed; a
Workflow is Current when valid and Failed when not; an unobserved generation is InProgress.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tests.gitops.samples import Sample, run_samples, workflow_samples

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = run_samples() + workflow_samples()


@cache
def kstatus_binary() -> str:
    """Cached by hack/setup.sh; a cold build here takes about a minute."""
    out = subprocess.run([str(ROOT / "hack/build-kstatus.sh")], check=True,
                         capture_output=True, text=True, timeout=900)
    return out.stdout.strip().splitlines()[-1]


def kstatus(objects: list[dict[str, object]]) -> list[dict[str, str]]:
    out = subprocess.run([kstatus_binary()], input=json.dumps(objects), check=True,
                         capture_output=True, text=True, timeout=60)
    return [json.loads(line) for line in out.stdout.splitlines()]


@cache
def verdicts() -> dict[str, dict[str, str]]:
    answers = kstatus([s.body for s in SAMPLES])
    assert len(answers) == len(SAMPLES)
    return {f"{s.body['kind']}/{s.name}": a for s, a in zip(SAMPLES, answers, strict=True)}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: f"{s.body['kind']}/{s.name}")
def test_kstatus_verdict(sample: Sample) -> None:
    answer = verdicts()[f"{sample.body['kind']}/{sample.name}"]
    assert "error" not in answer, answer
    assert answer["status"] == sample.kstatus, answer


def test_a_stalled_verdict_carries_the_runs_message() -> None:
    answer = verdicts()["WorkflowRun/failed"]
    assert answer["status"] == "Failed" and "step 'a' failed" in answer["message"]


def test_without_the_health_conditions_kstatus_calls_a_failed_run_current() -> None:
    """The bug of issue 15: only Succeeded=False, and kstatus saw nothing wrong."""
    failed = next(s for s in SAMPLES if s.name == "failed").body
    old = json.loads(json.dumps(failed))
    old["status"]["conditions"] = [c for c in old["status"]["conditions"]
                                   if c["type"] == "Succeeded"]
    assert kstatus([old])[0]["status"] == "Current"
