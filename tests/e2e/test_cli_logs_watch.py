"""The CLI following runs: `watch`, `logs` and `logs -f` (see cli_kit.py).

`logs` reads real pods: plain Jobs with the step labels, run by the cluster's node (the
local agent, or any node that can pull python:3.11-slim).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from localcluster.testing import ClusterUnderTest

from tests.e2e.cli_kit import Cli, eventually, install_crds, iso, pipeline_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def crds(cluster: ClusterUnderTest) -> ClusterUnderTest:
    return install_crds(cluster)


@pytest.fixture
def cli(crds: ClusterUnderTest, namespace: str) -> Iterator[Cli]:
    yield pipeline_cli(crds, namespace)


# --- watch -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("phase", "code"), [("Succeeded", 0), ("Failed", 3)])
def test_watch_exits_with_the_runs_outcome(cli: Cli, phase: str, code: int) -> None:
    name = cli.new_run()
    proc = cli.popen("watch", name)
    try:
        time.sleep(1.5)  # let it start watching; updates then arrive as watch events
        cli.set_status(name, {"phase": "Running", "startedAt": iso(), "progress": "0/4"})
        cli.set_status(name, {"phase": phase, "finishedAt": iso(), "progress": "4/4"})
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert f"Phase {phase}" in " ".join(out.split()) and "Traceback" not in err


# --- logs ------------------------------------------------------------------------------------


def _step_job(cli: Cli, run: str, step: str, attempt: int, script: str) -> None:
    labels = {"taskforge.io/workflow": "pipeline", "taskforge.io/run": run,
              "taskforge.io/step": step, "taskforge.io/attempt": str(attempt)}
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{run}-{step}-{attempt}", "labels": labels},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": labels},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "step", "image": "python:3.11-slim",
                "command": ["python", "-c", script]}]}}},
    }
    cli.apply(json.dumps(job))


def _jobs_done(cli: Cli, count: int) -> bool:
    pods = json.loads(cli.kubectl("get", "pods", "-o", "json"))["items"]
    phases = [p.get("status", {}).get("phase") for p in pods]
    return len(phases) == count and all(ph in ("Succeeded", "Failed") for ph in phases)


def test_logs_of_steps_and_attempts(cli: Cli) -> None:
    run = cli.new_run()
    cli.set_status(run, {"phase": "Running"})
    _step_job(cli, run, "fetch", 1, "print('fetch try 1')")
    _step_job(cli, run, "fetch", 2, "print('fetch try 2'); print('[bold]kept[/bold]')")
    _step_job(cli, run, "transform", 1, "import sys; print('transform out'); sys.exit(3)")
    eventually(lambda: _jobs_done(cli, 3), timeout=120, what="the step pods to finish")

    every = cli("logs", run)
    assert every.exit_code == 0, every.output
    lines = every.stdout.splitlines()
    # latest attempt per step, in DAG order, prefixed by the step (and attempt when > 1)
    assert [ln.split()[0] for ln in lines] == ["[fetch#2]", "[fetch#2]", "[transform]"]
    assert lines[0].endswith("fetch try 2") and lines[1].endswith("[bold]kept[/bold]")
    assert lines[2].endswith("transform out")

    one = cli("logs", run, "fetch", "--attempt", "1")
    assert one.exit_code == 0 and one.stdout == "fetch try 1\n"

    skipped = cli("logs", run, "report")
    assert skipped.exit_code == 1 and "no pod for step 'report'" in skipped.stderr
    unknown = cli("logs", run, "zzz")
    assert unknown.exit_code == 1 and "has no step 'zzz'" in unknown.stderr


def test_logs_follow_streams_until_the_run_ends(cli: Cli) -> None:
    run = cli.new_run()
    cli.set_status(run, {"phase": "Running"})
    _step_job(cli, run, "fetch", 1,
              "import time\nfor i in range(3):\n print('tick', i, flush=True); time.sleep(1)")
    proc = cli.popen("logs", run, "-f")
    try:
        # a later step appears while following
        time.sleep(2)
        _step_job(cli, run, "transform", 1, "print('late step')")
        eventually(lambda: _jobs_done(cli, 2), timeout=120, what="the step pods to finish")
        cli.set_status(run, {"phase": "Succeeded"})
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = [tuple(ln.split(maxsplit=1)) for ln in out.splitlines()]
    # streams interleave across steps, but each step's lines come in order
    assert [text for step, text in lines if step == "[fetch]"] == ["tick 0", "tick 1", "tick 2"]
    assert [text for step, text in lines if step == "[transform]"] == ["late step"]
    assert len(lines) == 4

