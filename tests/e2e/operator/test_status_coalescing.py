"""Status writes held for TASKFORGE_STATUS_COALESCE_SECONDS (handlers/held.py), for real.

Every write of the run's status is seen by a watch on the run, so the tests count the
operator's status writes exactly, and see what each one said.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import watch
from taskforge import GROUP, VERSION

from tests.e2e.operator.conftest import Kube, OperatorProcess, step_phases
from tests.e2e.operator.test_runs import _jobs_per_attempt, log_step, script_step


@pytest.fixture
def long_window(running_operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """The session operator restarted with a 30 s window (the maximum), then as it was."""
    with running_operator.restarted_with({"TASKFORGE_STATUS_COALESCE_SECONDS": "30"}) as op:
        yield op


class StatusLog:
    """Every status the API server stored for one run, in order, from a watch."""

    def __init__(self, kube: Kube, name: str) -> None:
        self.statuses: list[dict[str, Any]] = []
        self._stopped = False
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._follow, args=(kube, name), daemon=True)
        self._thread.start()

    def _follow(self, kube: Kube, name: str) -> None:
        last: dict[str, Any] | None = None
        try:
            for event in self._watch.stream(
                kube.custom.list_namespaced_custom_object, GROUP, VERSION, kube.namespace,
                "workflowruns", field_selector=f"metadata.name={name}", timeout_seconds=120,
            ):
                status = event["object"].get("status") or {}
                if status and status != last:
                    self.statuses.append(status)
                    last = status
        except Exception:
            if not self._stopped:  # the test reads a truncated list: it fails, not hangs
                self.statuses.append({"phase": "watch broke"})

    def stop(self) -> None:
        time.sleep(1.0)  # the last write's watch event
        self._stopped = True
        self._watch.stop()


def run_watched(kube: Kube, workflow: str, spec: dict[str, Any]
                ) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Run `spec` once to its end: the run's name, its last state, every status stored."""
    kube.workflow(workflow, spec)
    name = f"{workflow}-{int(time.time() * 1000) % 10**8}"
    seen = StatusLog(kube, name)
    kube.start_run(workflow, name=name)
    run = kube.wait_run(name)
    seen.stop()
    assert run["status"]["phase"] == "Succeeded", run["status"]
    return name, run, seen.statuses


def test_a_quick_run_writes_its_status_once(kube: Kube, long_window: OperatorProcess) -> None:
    name, run, statuses = run_watched(kube, "quick", {"steps": [log_step("only", "hello")]})
    # One write: the launch waited for the step's end, which carries the whole story.
    assert [s.get("phase") for s in statuses] == ["Succeeded"], statuses
    only = run["status"]["steps"]["only"]
    assert (only["phase"], only["attempts"], only["jobName"]) == ("Succeeded", 1, f"{name}-only-1")
    assert only["startedAt"] <= only["finishedAt"] and run["status"]["startedAt"]


def test_a_chain_coalesces_its_hand_offs(kube: Kube, long_window: OperatorProcess) -> None:
    steps = [log_step("s1", "1")] + [log_step(f"s{i}", str(i), dependsOn=[f"s{i - 1}"])
                                     for i in range(2, 6)]
    _, run, statuses = run_watched(kube, "chain", {"steps": steps})
    assert set(step_phases(run).values()) == {"Succeeded"}
    assert len(statuses) == 1, [step_phases({"status": s}) for s in statuses]


def test_kill_9_while_a_launch_is_held(kube: Kube, long_window: OperatorProcess) -> None:
    """The held status dies with the operator; the next one adopts the Job it created."""
    kube.workflow("heldkill", {"steps": [script_step("work", "sleep 4"),
                                         log_step("next", "n", dependsOn=["work"])]})
    name = kube.start_run("heldkill")
    deadline = time.monotonic() + 60
    while not kube.jobs(name):
        assert time.monotonic() < deadline, "no Job was created"
        time.sleep(0.1)
    assert "work" not in step_phases(kube.run(name))  # the launch is held, not written
    long_window.kill()
    long_window.start()
    run = kube.wait_run(name, timeout=90)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert _jobs_per_attempt(kube, name) == {("work", "1"): 1, ("next", "1"): 1}


def test_a_long_step_shows_running_within_the_default_window(kube: Kube) -> None:
    _, _, statuses = run_watched(kube, "slow", {"steps": [script_step("wait", "sleep 8")]})
    phases = [step_phases({"status": s}).get("wait") for s in statuses]
    assert "Running" in phases, phases  # written when the 3 s window ended, mid-step
