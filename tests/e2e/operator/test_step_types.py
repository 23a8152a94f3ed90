"""Every step type end to end: a Workflow through the real operator, Jobs, pods, results.

One module per topic, helpers in stepkit.py:

* test_step_http.py: http
* test_step_script_log.py: script, log
* test_step_container.py: container
* test_step_notify.py: slack, email
* test_approval.py: approval
* test_flow.py: workflow (sub-workflows)

Here: what holds for the config of any step, and the guard that keeps the list complete.
"""

from __future__ import annotations

from taskforge.api.steps import STEP_TYPES

from tests.e2e.operator.conftest import Kube
from tests.e2e.operator.stepkit import step_of


def test_dollar_signs_in_step_config_reach_the_executor_unchanged(kube: Kube) -> None:
    """`$$` (a shell's PID, a price) and `$(X)` are plain text in a step's config: the executor
    must see them as written, as with any other character."""
    text = "pid $$ and $(TASKFORGE_RUN) and $$(escaped) cost $5"
    kube.workflow(
        "dollars",
        {
            "steps": [
                {"name": "say", "log": {"message": text}},
                {"name": "sh", "script": {"source": "cat <<'EOF'\n" + text + "\nEOF\n"}},
            ]
        },
    )
    run = kube.wait_run(kube.start_run("dollars"))
    assert step_of(run, "say").get("outputs") == {"message": text}, run["status"]
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert step_of(run, "sh")["outputs"]["stdout"] == text + "\n"


def test_every_step_type_is_covered() -> None:
    """A new step type needs tests in a test_step_*.py module: compare with the API's list."""
    covered = {"http", "script", "log", "container", "slack", "email", "approval", "workflow"}
    assert set(STEP_TYPES) == covered
