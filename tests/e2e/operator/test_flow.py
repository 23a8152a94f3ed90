"""Issue 19's workflow language on the real operator: forEach fan-out, run outputs and
sub-workflows, through their examples in examples/ and a few edges (a failing item, cancel).
Short steps (log and sh scripts), so the module adds little to the suite's time."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.operator.conftest import Kube, OperatorProcess, step_phases
from tests.e2e.operator.stepkit import step_of
from tests.e2e.operator.test_examples import apply_example, wait

pytestmark = pytest.mark.both_nodes


def test_fan_out_example(kube: Kube, cluster: Any) -> None:
    apply_example(cluster, kube, "fan-out.yaml")
    run = wait(kube, "fan-out-1", "Succeeded")
    check = step_of(run, "check")
    items = check["items"]
    assert (items["total"], items["succeeded"], items["phases"]) == (4, 4, "SSSS")
    assert [o["region"] for o in items["outputs"]] == ["eu-west", "us-east", "ap-south",
                                                       "sa-east"]
    assert [o["index"] for o in items["outputs"]] == [0, 1, 2, 3]
    assert items["values"] == ["eu-west", "us-east", "ap-south", "sa-east"]
    assert run["status"]["outputs"] == {"regions": "eu-west,us-east,ap-south,sa-east",
                                        "longest": "8"}
    assert run["status"]["itemProgress"] == "4/4"
    report = step_of(run, "report")["outputs"]["message"]
    assert report == "checked 4 regions: eu-west, us-east, ap-south, sa-east"
    jobs = [j for j in kube.jobs("fan-out-1") if j.metadata.labels["taskforge.io/step"] == "check"]
    assert sorted(j.metadata.labels["taskforge.io/item"] for j in jobs) == ["0", "1", "2", "3"]
    assert len({j.metadata.name for j in jobs}) == 4


def _fan(name: str, items: list[Any], source: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "forEach": {"items": items, "maxParallel": 2},
            "script": {"source": source}, **extra}


def test_failing_item_fails_the_step_and_skips_dependents(kube: Kube) -> None:
    kube.workflow("fan-fail", {"steps": [
        _fan("fan", [1, 2, 3, 4, 5],
             'if [ "{{ item }}" = 2 ]; then echo bad item >&2; exit 78; fi; sleep 0.2'),
        {"name": "after", "dependsOn": ["fan"], "log": {"message": "never"}},
    ]})
    name = kube.start_run("fan-fail")
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Failed", json.dumps(run["status"])[:3000]
    assert step_phases(run) == {"fan": "Failed", "after": "Skipped"}
    fan = step_of(run, "fan")
    items = fan["items"]
    assert items["failed"] == 1 and items["phases"][1] == "F"
    assert items["failures"][0]["index"] == 1 and items["failures"][0]["exitCode"] == 78
    assert "1 of 5 items failed; item 1:" in fan["message"]
    assert items["succeeded"] + items["cancelled"] == 4  # running items finish, none start


def test_cancel_stops_running_items(kube: Kube) -> None:
    kube.workflow("fan-cancel", {"steps": [_fan("fan", list(range(6)), "sleep 30")]})
    name = kube.start_run("fan-cancel")
    kube.wait_run(name, until=lambda r: ((r.get("status") or {}).get("steps") or {})
                  .get("fan", {}).get("items", {}).get("running") == 2, timeout=60)
    kube.patch_run(name, {"spec": {"cancel": True}})
    run = kube.wait_run(name, timeout=60)
    assert run["status"]["phase"] == "Cancelled"
    items = step_of(run, "fan")["items"]
    assert items["phases"] == "CCCCCC" and items["cancelled"] == 6


def test_sub_workflow_example(kube: Kube, cluster: Any) -> None:
    apply_example(cluster, kube, "sub-workflow.yaml")
    run = wait(kube, "onboard-1", "Succeeded")
    greet = step_of(run, "greet")
    assert greet["outputs"] == {"greeting": "Welcome aboard, Grace!", "length": "22"}
    assert run["status"]["outputs"] == {
        "message": "Welcome aboard, Grace! (22 characters)"}
    child = kube.run(greet["childRun"])
    meta = child["metadata"]
    assert meta["labels"] == {"taskforge.io/parent-run": "onboard-1",
                              "taskforge.io/parent-step": "greet"}
    assert meta["annotations"]["taskforge.io/call-chain"] == '["onboard"]'
    [owner] = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "WorkflowRun", "onboard-1", run["metadata"]["uid"])
    assert child["spec"]["params"] == {"who": "Grace"}
    assert child["status"]["phase"] == "Succeeded"


def test_cancelling_the_parent_cancels_the_child(kube: Kube) -> None:
    kube.workflow("slow-child", {"steps": [{"name": "wait", "script": {"source": "sleep 30"}}]})
    kube.workflow("parent", {"steps": [{"name": "call", "workflow": {"name": "slow-child"}}]})
    name = kube.start_run("parent")
    run = kube.wait_run(name, until=lambda r: ((r.get("status") or {}).get("steps") or {})
                        .get("call", {}).get("childRun") is not None, timeout=60)
    child = run["status"]["steps"]["call"]["childRun"]
    kube.wait_run(child, until=lambda r: (r.get("status") or {}).get("phase") == "Running",
                  timeout=60)
    kube.patch_run(name, {"spec": {"cancel": True}})
    assert kube.wait_run(name, timeout=60)["status"]["phase"] == "Cancelled"
    done = kube.wait_run(child, timeout=60)
    assert done["spec"]["cancel"] is True and done["status"]["phase"] == "Cancelled"


def test_a_child_deleted_by_hand_fails_the_step_and_is_not_run_again(
    kube: Kube, cluster: Any
) -> None:
    """Deleting a running child run by hand: the parent step fails naming it, and no second
    child of that name is created (it would run the child's work twice)."""
    kube.workflow("slow-kid", {"steps": [{"name": "wait", "script": {"source": "sleep 30"}}]})
    kube.workflow("caller", {"steps": [{"name": "call", "workflow": {"name": "slow-kid"}}]})
    name = kube.start_run("caller")
    run = kube.wait_run(name, until=lambda r: ((r.get("status") or {}).get("steps") or {})
                        .get("call", {}).get("childRun") is not None, timeout=60)
    child = run["status"]["steps"]["call"]["childRun"]
    first = kube.wait_run(child, until=lambda r: (r.get("status") or {}).get("phase")
                          == "Running", timeout=60)
    cluster.kubectl("delete", "-n", kube.namespace, f"workflowrun/{child}", "--wait=true")
    done = kube.wait_run(name, timeout=60)
    assert done["status"]["phase"] == "Failed"
    assert (f"child run {child} was deleted before it finished"
            in done["status"]["steps"]["call"]["message"])
    names = [r["metadata"]["name"] for r in kube.custom.list_namespaced_custom_object(
        "taskforge.io", "v1alpha1", kube.namespace, "workflowruns")["items"]]
    assert child not in names, "the deleted child was created again"
    assert first["metadata"]["uid"]


def test_a_cycle_of_workflows_fails_clearly(kube: Kube) -> None:
    kube.workflow("ping", {"steps": [{"name": "call", "workflow": {"name": "pong"}}]})
    kube.workflow("pong", {"steps": [{"name": "call", "workflow": {"name": "ping"}}]})
    name = kube.start_run("ping")
    run = kube.wait_run(name, timeout=60)
    assert run["status"]["phase"] == "Failed"
    message = run["status"]["steps"]["call"]["message"]
    assert "run " in message and "workflow cycle: ping -> pong -> ping" in message


def test_kill_9_during_a_fan_out_runs_no_item_twice(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    """The operator is SIGKILLed while items run and launch; restarted, it finishes the step
    from status and the Jobs alone, and every item has exactly one Job (deterministic names,
    adoption of Jobs whose launch the status lost)."""
    kube.workflow("fan-kill", {"steps": [_fan("fan", list(range(8)), "sleep 1")]})
    name = kube.start_run("fan-kill")
    kube.wait_run(name, until=lambda r: ((r.get("status") or {}).get("steps") or {})
                  .get("fan", {}).get("items", {}).get("running") == 2, timeout=60)
    running_operator.kill()
    running_operator.start()
    run = kube.wait_run(name, timeout=90)
    assert run["status"]["phase"] == "Succeeded", json.dumps(run["status"])[:3000]
    items = step_of(run, "fan")["items"]
    assert items["phases"] == "S" * 8 and items["succeeded"] == 8
    jobs = kube.jobs(name)
    per_item = sorted((j.metadata.labels["taskforge.io/item"],
                       j.metadata.labels["taskforge.io/attempt"]) for j in jobs)
    assert per_item == [(str(i), "1") for i in range(8)]
