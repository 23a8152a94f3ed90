"""Oversized runs: refused at apply when the CRD can see it, failed cleanly when it cannot.

Issue 11, defect 3: a 1.1 MB inline `workflowSpec` was accepted; its copy in status made the
run 2.2 MB, so every status patch failed ("trying to send message larger than max") while
200 step Jobs ran and the phase stayed empty. Now the CRD caps the steps' text at apply time
(api/sizes.py), and a run the API server could not store anyway (untyped JSON has no CRD
limit) fails before any Job with `StatusTooLarge`, in a minimal status, and is not retried.
Each test also checks that the operator stayed healthy.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from kubernetes.client.exceptions import ApiException
from taskforge.adapters import kube as kube_adapter
from taskforge.adapters.jobs import JobSettings, RunRef, build_job
from taskforge.api import WorkflowSpec
from taskforge.api.sizes import SPEC_TEXT_MAX_CHARS, spec_text
from taskforge.engine.actions import CreateJob
from taskforge.engine.sizes import check_job_size
from taskforge.handlers.failures import refused_job, refused_status

from tests.e2e.operator.conftest import GROUP, VERSION, Kube, OperatorProcess

pytestmark = pytest.mark.e2e

QUIET_SECONDS = 4.0


def assert_healthy(operator: OperatorProcess) -> None:
    assert operator.proc is not None and operator.proc.poll() is None, "the operator died"
    answer = httpx.get(f"http://127.0.0.1:{operator.http_port}/healthz", timeout=5)
    assert answer.is_success, answer.text


def inline_run(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkflowRun",
            "metadata": {"name": name}, "spec": {"workflowSpec": spec}}


def test_a_1_1_mb_inline_spec_is_rejected_at_apply_naming_the_field(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    # As in the issue: 200 steps of about 5.5 KB each (scripts, well under their own cap).
    steps = [{"name": f"s{i:03d}", "script": {"source": "echo " + "x" * 5500}}
             for i in range(200)]
    body = inline_run("huge", {"steps": steps})
    assert len(json.dumps(body)) > 1_100_000
    with pytest.raises(ApiException) as refused:
        kube.apply(body)
    message = json.loads(refused.value.body)["message"]
    assert refused.value.status == 422, message
    assert "spec.workflowSpec.steps: Invalid value" in message, message
    assert f"may total at most {SPEC_TEXT_MAX_CHARS} characters" in message, message
    assert kube.jobs("huge") == []
    assert_healthy(running_operator)


def _spread_text(total: int) -> dict[str, Any]:
    """A spec whose counted text is exactly `total` characters, over every kind of field."""
    steps: list[dict[str, Any]] = [
        {"name": "h", "when": "true", "http": {
            "url": "https://example.com/", "body": "b" * 100,
            "headers": [{"name": "X-A", "value": "v" * 50}], "query": {"q": "w" * 20}}},
        {"name": "c", "container": {"image": "busybox", "command": ["sh", "-c"],
                                    "args": ["a" * 30], "env": [{"name": "E", "value": "e"}]}},
        {"name": "m", "email": {"host": "smtp", "from": "a@b.c", "to": ["x@y.z"],
                                "subject": "s", "body": "b" * 40}},
        {"name": "k", "slack": {"webhookUrlFrom": {"name": "s", "key": "k"}, "text": "t" * 9}},
        {"name": "e", "script": {"source": "echo", "env": [{"name": "AB", "value": "xy"}]}},
    ]
    spec: dict[str, Any] = {"steps": steps}
    used = spec_text(WorkflowSpec.model_validate(spec).all_steps)
    left = total - used
    i = 0
    while left > 0:
        n = min(left, 4096)
        steps.append({"name": f"l{i}", "log": {"message": "m" * n}})
        left -= n
        i += 1
    return spec


@pytest.mark.parametrize(("extra", "accepted"), [(0, True), (1, False)], ids=["at", "over"])
def test_the_apiserver_and_the_models_agree_on_the_text_budget(
    kube: Kube, running_operator: OperatorProcess, extra: int, accepted: bool
) -> None:
    spec = _spread_text(SPEC_TEXT_MAX_CHARS + extra)
    workflow = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workflow",
                "metadata": {"name": "budget", "namespace": kube.namespace}, "spec": spec}
    try:
        kube.custom.create_namespaced_custom_object(
            GROUP, VERSION, kube.namespace, "workflows", workflow, dry_run="All")
        server_accepted = True
    except ApiException as exc:
        assert "at most 131072 characters" in json.loads(exc.body)["message"]
        server_accepted = False
    try:
        WorkflowSpec.model_validate(spec)
        models_accepted = True
    except ValueError:
        models_accepted = False
    assert (server_accepted, models_accepted) == (accepted, accepted)
    assert_healthy(running_operator)


def test_untyped_json_too_big_to_pin_is_rejected_at_apply_naming_the_field(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    # 4 x 210 KB of http json bodies: no CRD keyword can bound untyped JSON, so the operator's
    # validating webhook measures the spec (384 KiB at most) and names its largest part.
    steps = [{"name": f"post-{i}", "http": {"method": "POST", "url": "http://127.0.0.1:9/",
                                           "json": {"blob": "j" * (210_000 + i)}}}
             for i in range(4)]
    with pytest.raises(ApiException) as refused:
        kube.apply(inline_run("untyped", {"steps": steps}))
    message = json.loads(refused.value.body)["message"]
    assert "spec.workflowSpec.steps[3].http.json: the workflow spec is" in message, message
    assert "more than 384 KiB" in message, message
    assert kube.jobs("untyped") == []
    assert_healthy(running_operator)


def test_a_run_that_cannot_be_stored_fails_before_any_job_and_is_not_retried(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    # Within every apply-time limit: a 380 KB spec (untyped JSON) and a 450 KB param value.
    # Both are copied into status when the run starts (the pinned spec, the resolved params),
    # which would make the run 1.6 MB, past etcd's 1.5 MiB. The old operator launched the Jobs
    # and then failed every status write, leaving the phase empty.
    steps = [{"name": f"post-{i}", "http": {"method": "POST", "url": "http://127.0.0.1:9/",
                                           "json": {"blob": "j" * 190_000}}}
             for i in range(2)]
    spec = {"params": [{"name": "blob", "type": "string"}], "steps": steps}
    body = inline_run("oversized", spec)
    body["spec"]["params"] = {"blob": "p" * 450_000}
    name = "oversized"
    kube.apply(body)
    run = kube.wait_run(name, timeout=60)
    status = run["status"]
    assert status["phase"] == "Failed", status
    (cond,) = [c for c in status["conditions"] if c["type"] == "Succeeded"]
    assert (cond["status"], cond["reason"]) == ("False", "StatusTooLarge"), cond
    assert "status.workflowSpec" in cond["message"] and "1.5 MiB" in cond["message"]
    assert status["message"] == cond["message"]
    # minimal: the big parts are not there, and nothing was launched
    assert not {"workflowSpec", "steps", "params"} & set(status), sorted(status)
    assert kube.jobs(name) == []
    # one Event (posted in the background: on a busy machine it can take seconds)
    assert "StatusTooLarge" in kube.event_reasons(name, {"StatusTooLarge"}, timeout=60)
    # no retry loop: the run does not change any more, and no error is reported
    version = kube.run(name)["metadata"]["resourceVersion"]
    time.sleep(QUIET_SECONDS)
    assert kube.run(name)["metadata"]["resourceVersion"] == version
    reasons = [e.reason for e in kube.events(name)]
    assert reasons.count("StatusTooLarge") == 1, reasons
    assert "ReconcileError" not in reasons, reasons
    assert_healthy(running_operator)


@pytest.mark.parametrize(
    ("config_bytes", "status"),
    [(1_700_000, 422), (2_200_000, 422), (3_300_000, 413)],
    ids=["etcd", "grpc", "request-body"],
)
def test_the_api_servers_refusals_of_a_job_are_recognized_as_too_large(
    cluster: Any, kube: Kube, running_operator: OperatorProcess, config_bytes: int, status: int
) -> None:
    """The template caps keep a step's Job under 1 MiB, so no run can make one this big; the
    operator's own manifest, built outside a run, shows how the real API server refuses it.

    Over etcd's limit (1.5 MiB) and over its gRPC client's (2 MiB), the API server retries
    without managedFields on the already-defaulted Job and answers 422 about the selector;
    over its request limit (3 MiB), 413. The operator measures the manifest first
    (`check_job_size`) and recognizes all three answers as JobTooLarge (`refused_job`);
    tests/unit/test_reconcile_failures.py shows the run failing on each.
    """
    action = CreateJob(step="fetch", attempt=1, job_name="fetch-1", step_type="log",
                       config={"message": "z" * config_bytes}, timeout_seconds=None, labels={})
    manifest = build_job(action, RunRef("none", kube.namespace, "0"), JobSettings())
    measured = check_job_size(manifest, "fetch", 1)
    assert measured is not None and measured.reason == "JobTooLarge"
    previous = kube_adapter.set_api_client(cluster.api_client())
    try:
        with pytest.raises(ApiException) as refused:
            kube_adapter.create_job(kube.namespace, manifest)
    finally:
        kube_adapter.set_api_client(previous)
    assert refused.value.status == status, kube_adapter.describe(refused.value)
    too_large = refused_job(refused.value, action)
    assert too_large is not None, kube_adapter.api_message(refused.value)
    assert too_large.oversize.reason == "JobTooLarge"
    assert "step 'fetch' (attempt 1)" in too_large.oversize.message
    assert kube.batch.list_namespaced_job(kube.namespace).items == []
    assert_healthy(running_operator)


def test_the_api_servers_refusal_of_a_status_is_recognized_as_too_large(
    cluster: Any, kube: Kube, running_operator: OperatorProcess
) -> None:
    # A run of a Workflow that does not exist: the operator leaves it Pending.
    kube.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkflowRun",
                "metadata": {"name": "status-probe"}, "spec": {"workflowRef": {"name": "none"}}})
    previous = kube_adapter.set_api_client(cluster.api_client())
    try:
        with pytest.raises(ApiException) as refused:
            kube_adapter.patch_status(kube_adapter.RUNS, kube.namespace, "status-probe",
                                      {"status": {"params": {"blob": "p" * 1_700_000}}})
    finally:
        kube_adapter.set_api_client(previous)
    too_large = refused_status(refused.value)
    assert too_large is not None, kube_adapter.describe(refused.value)
    assert too_large.oversize.reason == "StatusTooLarge"
    assert_healthy(running_operator)
