"""The container step end to end: any image, its termination message as outputs."""

from __future__ import annotations

import pytest

from tests.e2e.operator.conftest import Kube
from tests.e2e.operator.stepkit import step_log, step_of

TERMINATION_SCRIPT = """\
import json, os, sys
n = int(sys.argv[1])
print("counting to", n, "as", os.environ["LABEL"])
outputs = {"squares": [i * i for i in range(n)], "label": os.environ["LABEL"]}
with open("/dev/termination-log", "w") as f:
    json.dump({"ok": True, "outputs": outputs}, f)
"""


@pytest.mark.both_nodes
def test_container_termination_message_becomes_outputs(kube: Kube) -> None:
    kube.workflow(
        "container",
        {
            "params": [{"name": "n", "type": "integer", "default": 3}],
            "steps": [
                {
                    "name": "squares",
                    "container": {
                        "image": "python:3.11-slim",
                        "command": ["python", "-c"],
                        "args": [TERMINATION_SCRIPT, "{{ params.n }}"],
                        "env": [{"name": "LABEL", "value": "n={{ params.n }}"}],
                    },
                },
                {
                    "name": "sum",
                    "dependsOn": ["squares"],
                    "log": {"message": "{{ steps.squares.outputs.squares | sum }}"},
                },
            ],
        },
    )
    name = kube.start_run("container", {"n": 5})
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    squares = step_of(run, "squares")
    assert squares["exitCode"] == 0
    assert squares["outputs"] == {"squares": [0, 1, 4, 9, 16], "label": "n=5"}
    assert step_of(run, "sum")["outputs"]["message"] == "30"
    job = next(j for j in kube.jobs(name) if j.metadata.labels["taskforge.io/step"] == "squares")
    container = job.spec.template.spec.containers[0]
    assert container.image == "python:3.11-slim"
    assert container.command == ["python", "-c"] and container.args[1] == "5"
    assert "counting to 5 as n=5" in step_log(kube, name, "squares")


def test_container_image_that_cannot_run_is_a_pod_failure(kube: Kube) -> None:
    image = "registry.example/unknown:1"
    kube.workflow(
        "badimage",
        {"steps": [{"name": "run", "timeout": "2m",
                    "container": {"image": image, "command": ["true"]}}]},
    )
    name = kube.start_run("badimage")
    run = kube.wait_run(name, timeout=150)
    step = step_of(run, "run")
    assert run["status"]["phase"] == "Failed"
    assert step["phase"] == "Failed" and step["failure"] == "PodFailure", step
    assert image in step["message"], step["message"]
    assert step["attempts"] == 1
