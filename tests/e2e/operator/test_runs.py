"""The operator end to end: real Workflows, real Jobs, the real executor in step pods."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.e2e.operator.conftest import Kube, OperatorProcess, step_phases


def log_step(name: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "log": {"message": message}, **extra}


def script_step(name: str, source: str, language: str = "sh", **extra: Any) -> dict[str, Any]:
    return {"name": name, "script": {"language": language, "source": source}, **extra}


@pytest.mark.both_nodes
def test_hello_world_and_kubectl_wait(kube: Kube, cluster: Any) -> None:
    kube.workflow(
        "hello",
        {
            "steps": [log_step("say", "hello {{ params.who }}")],
            "params": [{"name": "who", "default": "world"}],
            "stepEvents": "all",
        },
    )
    name = kube.start_run("hello")
    cluster.kubectl(
        "wait",
        "-n",
        kube.namespace,
        "--for=condition=Succeeded",
        "--timeout=60s",
        f"workflowrun/{name}",
    )
    run = kube.run(name)
    status = run["status"]
    assert status["phase"] == "Succeeded"
    assert status["progress"] == "1/1"
    assert status["steps"]["say"]["outputs"]["message"] == "hello world"
    assert status["workflow"]["name"] == "hello"
    job = kube.jobs(name)[0]
    assert job.spec.backoff_limit == 0
    assert job.metadata.owner_references[0].kind == "WorkflowRun"
    labels = job.metadata.labels
    assert labels["taskforge.io/step"] == "say" and labels["taskforge.io/attempt"] == "1"
    pod_spec = job.spec.template.spec
    assert pod_spec.automount_service_account_token is False
    assert pod_spec.security_context.run_as_non_root is True
    assert {"StepStarted", "StepSucceeded"} <= kube.event_reasons(name, {"StepSucceeded"})


def test_diamond_dag_passes_outputs(kube: Kube) -> None:
    kube.workflow(
        "diamond",
        {
            "steps": [
                script_step(
                    "a",
                    'import json, os\njson.dump({"value": 20}, '
                    'open(os.environ["TASKFORGE_RESULT"], "w"))',
                    language="python",
                ),
                script_step(
                    "b",
                    'echo "{\\"v\\": $(( {{ steps.a.outputs.value }} + 1 ))}" '
                    '> "$TASKFORGE_RESULT"',
                    dependsOn=["a"],
                ),
                script_step(
                    "c",
                    'echo "{\\"v\\": $(( {{ steps.a.outputs.value }} * 2 ))}" '
                    '> "$TASKFORGE_RESULT"',
                    dependsOn=["a"],
                ),
                log_step(
                    "d", "sum={{ steps.b.outputs.v + steps.c.outputs.v }}", dependsOn=["b", "c"]
                ),
            ]
        },
    )
    run = kube.wait_run(kube.start_run("diamond"))
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["steps"]["d"]["outputs"]["message"] == "sum=61"
    # stepEvents: default: a step's start and success are in status only; the run's end posts
    reasons = kube.event_reasons(run["metadata"]["name"], {"RunSucceeded"})
    assert "RunSucceeded" in reasons and not reasons & {"StepStarted", "StepSucceeded"}
    steps = run["status"]["steps"]
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    # Pod finish times have one-second resolution, as a kubelet writes them.
    last_dep = max(at(steps["b"]["finishedAt"]), at(steps["c"]["finishedAt"]))
    assert at(steps["d"]["startedAt"]) >= last_dep.replace(microsecond=0)


def _created(job: Any) -> datetime:
    created: datetime = job.metadata.creation_timestamp
    return created


def test_flaky_step_succeeds_on_third_attempt_with_backoff(kube: Kube) -> None:
    kube.workflow(
        "flaky",
        {
            "steps": [
                script_step(
                    "flaky",
                    'echo "attempt $TASKFORGE_ATTEMPT"; [ "$TASKFORGE_ATTEMPT" -ge 3 ]',
                    retry={
                        "limit": 4,
                        "backoff": {"type": "exponential", "delay": "2s", "factor": 2},
                    },
                )
            ]
        },
    )
    name = kube.start_run("flaky")
    run = kube.wait_run(name)
    step = run["status"]["steps"]["flaky"]
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert step["attempts"] == 3
    jobs = sorted(kube.jobs(name), key=lambda j: int(j.metadata.labels["taskforge.io/attempt"]))
    assert [j.metadata.labels["taskforge.io/attempt"] for j in jobs] == ["1", "2", "3"]
    gap1 = (_created(jobs[1]) - _created(jobs[0])).total_seconds()
    gap2 = (_created(jobs[2]) - _created(jobs[1])).total_seconds()
    # Creation times have one-second resolution: 2 s and 4 s waits, give or take one.
    assert gap1 >= 1, gap1
    assert gap2 >= 3, gap2
    assert gap2 > gap1
    assert "StepRetrying" in kube.event_reasons(name, {"StepRetrying"})


@pytest.mark.both_nodes
def test_step_timeout_fails_the_run(kube: Kube) -> None:
    kube.workflow("slow", {"steps": [script_step("slow", "sleep 60", timeout="2s")]})
    run = kube.wait_run(kube.start_run("slow"), timeout=60)
    step = run["status"]["steps"]["slow"]
    assert run["status"]["phase"] == "Failed"
    assert step["phase"] == "Failed" and step["failure"] == "TimedOut", step


@pytest.mark.both_nodes
def test_cancel_mid_run_deletes_jobs_and_runs_finally(kube: Kube) -> None:
    kube.workflow(
        "long",
        {
            "steps": [
                script_step("sleep", "sleep 120"),
                log_step("after", "x", dependsOn=["sleep"]),
            ],
            "finally": [log_step("cleanup", "cleaning up")],
        },
    )
    name = kube.start_run("long")
    kube.wait_run(name, lambda r: step_phases(r).get("sleep") == "Running")
    kube.patch_run(name, {"spec": {"cancel": True}})
    run = kube.wait_run(name, timeout=60)
    assert run["status"]["phase"] == "Cancelled", run["status"]
    phases = step_phases(run)
    assert phases["sleep"] == "Cancelled" and phases["after"] == "Cancelled"
    assert phases["cleanup"] == "Succeeded"
    sleep_jobs = [j for j in kube.jobs(name) if j.metadata.labels["taskforge.io/step"] == "sleep"]
    assert all(j.metadata.deletion_timestamp is not None for j in sleep_jobs) or not sleep_jobs


def test_finally_runs_after_failure_and_dead_letter_is_recorded(kube: Kube) -> None:
    kube.workflow(
        "breaks",
        {
            "steps": [
                script_step("boom", "echo broken >&2; exit 78"),
                log_step("never", "x", dependsOn=["boom"]),
            ],
            "finally": [log_step("notify", "run {{ run.name }} ended")],
        },
    )
    name = kube.start_run("breaks")
    run = kube.wait_run(name)
    phases = step_phases(run)
    assert run["status"]["phase"] == "Failed"
    assert phases == {"boom": "Failed", "never": "Skipped", "notify": "Succeeded"}
    assert run["status"]["steps"]["boom"]["attempts"] == 1  # exit 78 is permanent
    letter = run["status"]["deadLetter"]
    assert letter["step"] == "boom" and letter["attempts"] == 1
    conditions = {c["type"]: c for c in run["status"]["conditions"]}
    assert conditions["Succeeded"]["status"] == "False"


def test_when_false_skips_step_and_its_dependents(kube: Kube) -> None:
    kube.workflow(
        "maybe",
        {
            "params": [{"name": "deploy", "type": "boolean", "default": False}],
            "steps": [
                log_step("build", "b"),
                log_step("deploy", "d", dependsOn=["build"], when="params.deploy"),
                log_step("announce", "a", dependsOn=["deploy"]),
            ],
        },
    )
    run = kube.wait_run(kube.start_run("maybe"))
    assert run["status"]["phase"] == "Succeeded"
    assert step_phases(run) == {"build": "Succeeded", "deploy": "Skipped", "announce": "Skipped"}
    run = kube.wait_run(kube.start_run("maybe", params={"deploy": True}))
    assert set(step_phases(run).values()) == {"Succeeded"}


def test_twenty_concurrent_runs(kube: Kube) -> None:
    kube.workflow("many", {
        "steps": [log_step("one", "1"), log_step("two", "2", dependsOn=["one"])],
        "history": {"successfulRuns": 50},
    })
    names = [kube.start_run("many") for _ in range(20)]
    for name in names:
        run = kube.wait_run(name, timeout=120)
        assert run["status"]["phase"] == "Succeeded", (name, run["status"])
        assert len(kube.jobs(name)) == 2


def test_cycle_is_refused_at_apply(kube: Kube) -> None:
    """The validating webhook runs the engine's DAG check at apply (without a webhook, the
    same check gives Valid=False: tests/engine/test_template_refs.py and the planner tests)."""
    with pytest.raises(ApiException) as refused:
        kube.workflow(
            "loop",
            {"steps": [log_step("a", "a", dependsOn=["b"]),
                       log_step("b", "b", dependsOn=["a"])]},
        )
    assert refused.value.status == 422
    message = json.loads(refused.value.body)["message"]
    assert "spec.steps: dependency cycle: a -> b -> a" in message, message


def _jobs_per_attempt(kube: Kube, run: str) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for job in kube.jobs(run):
        key = (
            job.metadata.labels["taskforge.io/step"],
            job.metadata.labels["taskforge.io/attempt"],
        )
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_kill_9_while_a_step_runs(kube: Kube, running_operator: OperatorProcess) -> None:
    kube.workflow(
        "restart",
        {"steps": [script_step("work", "sleep 4"), log_step("next", "n", dependsOn=["work"])]},
    )
    name = kube.start_run("restart")
    kube.wait_run(name, lambda r: step_phases(r).get("work") == "Running")
    running_operator.kill()
    running_operator.start()
    run = kube.wait_run(name, timeout=90)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert _jobs_per_attempt(kube, name) == {("work", "1"): 1, ("next", "1"): 1}


def test_kill_9_while_a_retry_waits(kube: Kube, running_operator: OperatorProcess) -> None:
    kube.workflow(
        "retrywait",
        {
            "steps": [
                script_step(
                    "flaky",
                    '[ "$TASKFORGE_ATTEMPT" -ge 2 ]',
                    retry={"limit": 2, "backoff": {"type": "fixed", "delay": "5s"}},
                )
            ]
        },
    )
    name = kube.start_run("retrywait")
    run = kube.wait_run(name, lambda r: step_phases(r).get("flaky") == "Retrying")
    next_at = run["status"]["steps"]["flaky"]["nextAttemptAt"]
    running_operator.kill()
    running_operator.start()
    run = kube.wait_run(name, timeout=90)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert _jobs_per_attempt(kube, name) == {("flaky", "1"): 1, ("flaky", "2"): 1}
    second = next(j for j in kube.jobs(name) if j.metadata.labels["taskforge.io/attempt"] == "2")
    assert second.metadata.creation_timestamp >= datetime.fromisoformat(
        next_at.replace("Z", "+00:00")
    ).replace(microsecond=0)


def test_deleting_a_run_removes_its_jobs(kube: Kube, cluster: Any) -> None:
    kube.workflow("gone", {"steps": [script_step("s", "sleep 60")]})
    name = kube.start_run("gone")
    kube.wait_run(name, lambda r: step_phases(r).get("s") == "Running")
    cluster.kubectl(
        "delete", "-n", kube.namespace, f"workflowrun/{name}", "--wait=true", "--timeout=60s"
    )
    deadline = datetime.now().timestamp() + 60
    while kube.jobs(name) and datetime.now().timestamp() < deadline:
        subprocess.run(["sleep", "0.5"], check=True)
    assert kube.jobs(name) == []


def test_a_job_name_held_by_another_run_falls_back_to_the_hashed_name(kube: Kube) -> None:
    """Run `a-b` step `c` and run `a` step `b-c` both read as Job `a-b-c-1`."""
    kube.workflow("one", {"steps": [log_step("c", "first")]})
    kube.workflow("two", {"steps": [log_step("b-c", "second")]})
    kube.start_run("one", name="a-b")
    assert kube.wait_run("a-b")["status"]["phase"] == "Succeeded"
    kube.start_run("two", name="a")
    run = kube.wait_run("a")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    step = run["status"]["steps"]["b-c"]
    assert step["outputs"]["message"] == "second"
    assert re.fullmatch(r"a-b-c-[0-9a-f]{8}-1", step["jobName"]), step["jobName"]
    assert [j.metadata.name for j in kube.jobs("a")] == [step["jobName"]]
    theirs = kube.batch.read_namespaced_job("a-b-c-1", kube.namespace)
    assert theirs.metadata.labels["taskforge.io/run"] == "a-b"
    assert "JobNameTaken" in kube.event_reasons("a", {"JobNameTaken"})
