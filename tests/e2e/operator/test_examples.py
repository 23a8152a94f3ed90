"""Every file in examples/ applied with kubectl and run through the real operator.

Self-contained examples are applied as they are (`kubectl apply -f examples/NAME.yaml`, the
way their comments tell users to). Examples that talk to the outside world are applied with
the smallest change that points them at a server the test starts on 127.0.0.1 (see each
test's docstring); those servers listen where the cluster's pods reach this machine
(`cluster.host_ip`: 127.0.0.1 for the agent's host processes, the node IP for the real node),
so they run on no foreign cluster. Every example runs on both local nodes (`both_nodes`):
with `--node=kubelet` each step is a real container of the executor image.
`test_every_example_is_exercised` keeps this list in step with the directory.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from taskforge.engine.webhook import sign

from tests.e2e.operator.conftest import ROOT, Kube, OperatorProcess, step_phases
from tests.e2e.operator.stepkit import (
    AUTH_WITHOUT_TLS,
    SLIDESHOW,
    Reply,
    StubServer,
    smtp_server,
    step_log,
    step_of,
)

EXAMPLES = ROOT / "examples"
Docs = list[dict[str, Any]]


def load(name: str) -> Docs:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    return docs


def doc(docs: Docs, kind: str, name: str | None = None) -> dict[str, Any]:
    return next(
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    )


def apply_example(cluster: Any, kube: Kube, name: str,
                  edit: Callable[[Docs], None] | None = None) -> None:
    """`kubectl apply` the file itself, or (with `edit`) its documents after the edit."""
    if edit is None:
        cluster.kubectl("apply", "-n", kube.namespace, "-f", str(EXAMPLES / name))
        return
    docs = load(name)
    edit(docs)
    cluster.kubectl("apply", "-n", kube.namespace, "-f", "-", input=yaml.safe_dump_all(docs))


def wait(kube: Kube, run: str, phase: str, timeout: float = 120) -> dict[str, Any]:
    body = kube.wait_run(run, timeout=timeout)
    assert body["status"]["phase"] == phase, json.dumps(body["status"], indent=1)[:6000]
    return body


def message(run: dict[str, Any], step: str) -> str:
    text: str = step_of(run, step)["outputs"]["message"]
    return text


pytestmark = pytest.mark.both_nodes


@pytest.fixture
def stub(cluster: Any) -> Iterator[StubServer]:
    server = StubServer(cluster.host_ip)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- self-contained examples, applied unchanged ----------------------------------------------


def test_hello(kube: Kube, cluster: Any) -> None:
    apply_example(cluster, kube, "hello.yaml")
    run = wait(kube, "hello-1", "Succeeded")
    assert message(run, "greet") == "Hello, Taskforge! This is run hello-1."
    count = step_of(run, "count")["outputs"]
    assert count["letters"] == len("Hello, Taskforge!")
    assert count["stdout"] == "Hello, Taskforge!\n"


def test_diamond(kube: Kube, cluster: Any) -> None:
    apply_example(cluster, kube, "diamond.yaml")
    run = wait(kube, "diamond-1", "Succeeded")
    values = {s: step_of(run, s)["outputs"]["value"] for s in ("start", "double", "square", "sum")}
    assert values == {"start": 12, "double": 24, "square": 144, "sum": 168}
    assert message(run, "report") == "2x + x^2 for x=12 is 168"


def test_retry_backoff(kube: Kube, cluster: Any) -> None:
    apply_example(cluster, kube, "retry-backoff.yaml")
    run = wait(kube, "retry-backoff-1", "Succeeded")
    assert step_phases(run) == {"flaky": "Succeeded", "validate-input": "Failed",
                                "done": "Succeeded"}
    assert step_of(run, "flaky")["attempts"] == 3
    validate = step_of(run, "validate-input")
    assert validate["attempts"] == 1 and validate["exitCode"] == 78  # permanent: not retried
    attempts = sorted(
        int(j.metadata.labels["taskforge.io/attempt"])
        for j in kube.jobs("retry-backoff-1")
        if j.metadata.labels["taskforge.io/step"] == "flaky"
    )
    assert attempts == [1, 2, 3]


def test_finally_cleanup(kube: Kube, cluster: Any) -> None:
    apply_example(cluster, kube, "finally-cleanup.yaml")
    run = wait(kube, "finally-cleanup-1", "Failed")
    assert step_phases(run) == {"prepare": "Succeeded", "work": "Failed",
                                "cleanup": "Succeeded", "alert": "Succeeded"}
    assert step_of(run, "work")["attempts"] == 1
    assert message(run, "alert") == "finally-cleanup-1: step work failed; scratch space removed."
    assert run["status"]["deadLetter"]["step"] == "work"


def test_finally_cleanup_when_work_succeeds(kube: Kube, cluster: Any) -> None:
    def no_failure(docs: Docs) -> None:
        doc(docs, "WorkflowRun")["spec"]["params"] = {"fail": False}

    apply_example(cluster, kube, "finally-cleanup.yaml", no_failure)
    run = wait(kube, "finally-cleanup-1", "Succeeded")
    assert step_phases(run) == {"prepare": "Succeeded", "work": "Succeeded",
                                "cleanup": "Succeeded", "alert": "Skipped"}


def test_script_languages(kube: Kube, cluster: Any) -> None:
    apply_example(cluster, kube, "script-languages.yaml")
    run = wait(kube, "script-languages-1", "Succeeded")
    assert step_of(run, "posix-sh")["outputs"]["shell"] == "sh"
    assert step_of(run, "bash")["outputs"]["count"] == 3
    python = step_of(run, "python")["outputs"]
    assert python["words"] == 3 and python["shell"] == "sh"
    assert python["python"].startswith("3.")


def test_log_levels(kube: Kube, cluster: Any) -> None:
    apply_example(cluster, kube, "log-levels.yaml")
    run = wait(kube, "log-levels-1", "Succeeded")
    assert message(run, "debug") == "billing: starting checks"
    assert message(run, "info") == "billing: run log-levels-1 is under way"
    assert message(run, "warning") == "billing: disk is 85% full"
    assert message(run, "error") == "billing: invoices are late"


def test_inline_run(kube: Kube, cluster: Any) -> None:
    apply_example(cluster, kube, "inline-run.yaml")
    run = wait(kube, "one-off-1", "Succeeded")
    assert message(run, "say") == "hello from an inline workflow"


def test_container(kube: Kube, cluster: Any) -> None:
    apply_example(cluster, kube, "container.yaml")
    run = wait(kube, "container-1", "Succeeded")
    primes = step_of(run, "primes")
    assert primes["exitCode"] == 0
    assert primes["outputs"] == {"count": 15, "largest": 47}
    log = step_log(kube, "container-1", "primes")
    assert "primes below 50: [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47]" in log


# --- examples that reach out, pointed at local servers ---------------------------------------


@pytest.mark.local_agent
def test_http_fetch_and_post(kube: Kube, cluster: Any, stub: StubServer) -> None:
    """The run's params `source` and `target` point at the local server (httpbin's shapes)."""
    stub.route("/json", Reply(200, SLIDESHOW))
    stub.route("/post", Reply(200, echo=True))

    def local(docs: Docs) -> None:
        doc(docs, "WorkflowRun")["spec"]["params"] = {
            "source": f"{stub.url}/json", "target": f"{stub.url}/post",
        }

    apply_example(cluster, kube, "http-fetch-and-post.yaml", local)
    run = wait(kube, "http-fetch-and-post-1", "Succeeded")
    assert step_of(run, "fetch")["outputs"]["headers"] == {"Content-Type": "application/json"}
    [posted] = stub.requests("/post")
    token = doc(load("http-fetch-and-post.yaml"), "Secret")["stringData"]["token"]
    assert posted.headers["authorization"] == token
    assert posted.json() == {
        "title": "Sample Slide Show",
        "source": f"{stub.url}/json",
        "run": "http-fetch-and-post-1",
    }
    echoed = step_of(run, "post")["outputs"]["body"]
    assert echoed["headers"]["authorization"] == "[redacted]"
    assert token not in json.dumps(kube.run("http-fetch-and-post-1"))


@pytest.mark.local_agent
def test_slack(kube: Kube, cluster: Any, stub: StubServer) -> None:
    """The Secret holds the local receiver's URL instead of hooks.slack.com."""
    path = f"/services/T00000000/B00000000/{uuid.uuid4().hex}"
    stub.route(path, Reply(200, "ok"))

    def local(docs: Docs) -> None:
        doc(docs, "Secret")["stringData"]["url"] = f"{stub.url}{path}"

    apply_example(cluster, kube, "slack.yaml", local)
    run = wait(kube, "slack-1", "Succeeded")
    [posted] = stub.requests(path)
    body = posted.json()
    assert body["text"] == "deploy finished: version 1.4.2"
    assert body["blocks"] == [{"type": "section", "text": {
        "type": "mrkdwn", "text": "*deploy finished*\nversion `1.4.2`, run slack-1"}}]
    assert path not in json.dumps(kube.run("slack-1"))
    assert step_of(run, "notify")["outputs"]["status"] == 200


@pytest.mark.local_agent
@AUTH_WITHOUT_TLS
def test_email(kube: Kube, cluster: Any) -> None:
    """host, port and security are literal (port is an integer, it cannot be a template):
    they are replaced by a local aiosmtpd with `security: none`, which requires AUTH with the
    example Secret's credentials."""
    secret = doc(load("email.yaml"), "Secret")["stringData"]
    controller, smtp = smtp_server((secret["username"], secret["password"]), cluster.host_ip)
    try:
        def local(docs: Docs) -> None:
            steps = doc(docs, "Workflow")["spec"]["steps"]
            email = next(s for s in steps if "email" in s)["email"]
            email.update(host=smtp.host, port=smtp.port, security="none")

        apply_example(cluster, kube, "email.yaml", local)
        run = wait(kube, "email-1", "Succeeded")
        percent = step_of(run, "disk-usage")["outputs"]["percent"]
        [mail] = smtp.inbox.messages
        [(_, rcpt_tos, authenticated)] = smtp.inbox.envelopes
        assert authenticated and rcpt_tos == ["ops@example.com"]
        assert mail["Subject"] == "Disk usage report (email-1)"
        body = mail.get_content().replace("\r\n", "\n")
        assert body == f"Hello,\n\nthe disk is {percent}% full.\n\n-- Taskforge\n"
        assert secret["password"] not in json.dumps(kube.run("email-1"))
    finally:
        controller.stop()


@pytest.mark.local_agent
def test_cron_schedule(kube: Kube, cluster: Any, stub: StubServer) -> None:
    """Applied suspended (a schedule firing during the test would probe example.com), then run
    by hand with `target` pointing at the local server."""
    stub.route("/healthz", Reply(200, {"status": "ok"}))

    def local(docs: Docs) -> None:
        doc(docs, "Workflow")["spec"]["triggers"]["schedule"]["suspend"] = True
        docs.append({
            "apiVersion": "taskforge.io/v1alpha1", "kind": "WorkflowRun",
            "metadata": {"name": "cron-schedule-manual"},
            "spec": {"workflowRef": {"name": "cron-schedule"},
                     "params": {"target": f"{stub.url}/healthz"}},
        })

    apply_example(cluster, kube, "cron-schedule.yaml", local)
    run = wait(kube, "cron-schedule-manual", "Succeeded")
    assert message(run, "record") == (
        f"{stub.url}/healthz answered 200 in cron-schedule-manual"
    )
    assert len(stub.requests("/healthz")) == 1


def test_webhook(kube: Kube, cluster: Any, running_operator: OperatorProcess) -> None:
    """Delivered to the operator's webhook endpoint, signed with the example Secret's key. The
    pull request's ref does not start with `release-`, so the `check` step (which calls
    api.github.com) is skipped."""
    apply_example(cluster, kube, "webhook.yaml")
    key = doc(load("webhook.yaml"), "Secret")["stringData"]["key"].encode()
    payload = {"pull_request": {"number": 42, "title": "Fix the flux capacitor",
                                "head": {"ref": "fix-42"}}}
    body = json.dumps(payload).encode()
    url = f"http://127.0.0.1:{running_operator.http_port}/hooks/{kube.namespace}/webhook"
    headers = {"Content-Type": "application/json", "X-Taskforge-Signature": sign(key, body),
               "X-Taskforge-Delivery": uuid.uuid4().hex}
    deadline = time.monotonic() + 30
    while True:  # until the operator's cache has the new Workflow
        response = httpx.post(url, content=body, headers=headers, timeout=30)
        if response.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert response.status_code == 202, response.text
    name = response.json()["run"]
    run = wait(kube, name, "Succeeded")
    assert step_phases(run) == {"announce": "Succeeded", "check": "Skipped"}
    assert message(run, "announce") == "PR #42 (fix-42): Fix the flux capacitor"
    assert kube.run(name)["spec"]["params"] == {"ref": "fix-42", "number": 42}


COVERED = {
    "hello.yaml", "diamond.yaml", "retry-backoff.yaml", "finally-cleanup.yaml",
    "script-languages.yaml", "log-levels.yaml", "inline-run.yaml", "container.yaml",
    "http-fetch-and-post.yaml", "slack.yaml", "email.yaml", "cron-schedule.yaml",
    "webhook.yaml",
    # tests/e2e/operator/test_timing.py:
    "delayed-run.yaml", "priorities.yaml",
    # tests/e2e/operator/test_approval.py:
    "approval.yaml",
    # tests/e2e/operator/test_flow.py:
    "fan-out.yaml", "sub-workflow.yaml",
}


def test_every_example_is_exercised() -> None:
    assert {p.name for p in Path(EXAMPLES).glob("*.yaml")} == COVERED
