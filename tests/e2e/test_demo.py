"""`make demo`, the README's first command, runs a workflow to the end for real.

It is what a newcomer tries first, so it is tested as they run it: through make,
with its own control plane, Redis and operator, ending when the run ends
(TASKFORGE_DEMO_EXIT) instead of waiting for Ctrl-C.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.local_agent


def test_make_demo_runs_the_diamond_example_to_success(tmp_path: Path) -> None:
    env = dict(os.environ, TASKFORGE_DEMO_EXIT="1", TASKFORGE_DEMO_DIR=str(tmp_path),
               COLUMNS="200")
    result = subprocess.run(
        ["make", "-s", "demo"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=400, check=False,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "WorkflowRun diamond-1: Succeeded 5/5" in out, out[-4000:]
    for step in ("start", "double", "square", "sum", "report"):
        assert f"│ {step} " in out
    assert "2x + x^2 for x=12 is" in out
    assert f"export KUBECONFIG={tmp_path / 'cluster' / 'kubeconfig'}" in out
    assert "export PATH=" in out
    assert (tmp_path / "operator.log").stat().st_size > 0
    # everything the demo started is gone with it
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == "", leftovers.stdout
