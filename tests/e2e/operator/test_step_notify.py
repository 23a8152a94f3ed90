"""The notification steps end to end: slack (stub webhook) and email (local SMTP server).

Both servers listen on 127.0.0.1, which only pods of the local node agent can reach: every
test here is marked ``local_agent``. See stepkit.py for the shared helpers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.operator.conftest import Kube, OperatorProcess
from tests.e2e.operator.stepkit import (
    AUTH_WITHOUT_TLS,
    Reply,
    StubServer,
    assert_never_leaked,
    create_secret,
    secret_refs,
    serialize,
    smtp_server,
    step_of,
    unique,
)


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- slack -----------------------------------------------------------------------------------


@pytest.mark.local_agent
def test_slack_posts_text_and_blocks_to_the_secret_webhook(
    kube: Kube, stub: StubServer, running_operator: OperatorProcess
) -> None:
    token = uuid.uuid4().hex
    path = f"/services/T0E2E/B0E2E/{token}"
    webhook_url = f"{stub.url}{path}"
    stub.route(path, Reply(200, "ok"))
    create_secret(kube, "slack-webhook", {"url": webhook_url})
    kube.workflow(
        "slack",
        {
            "params": [{"name": "note", "default": "deploy finished"}],
            "steps": [
                {
                    "name": "version",
                    "script": {"source": "echo '{\"version\": \"1.4.2\"}' > \"$TASKFORGE_RESULT\""},
                },
                {
                    "name": "notify",
                    "dependsOn": ["version"],
                    "slack": {
                        "webhookUrlFrom": {"name": "slack-webhook", "key": "url"},
                        "text": "{{ params.note }}: version {{ steps.version.outputs.version }}",
                        "blocks": [
                            {
                                "type": "section",
                                "text": {
                                    "type": "mrkdwn",
                                    "text": "*{{ params.note }}*\nrun `{{ run.name }}`",
                                },
                            }
                        ],
                    },
                },
            ],
        },
    )
    name = kube.start_run("slack", {"note": "shipped"})
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert step_of(run, "notify")["outputs"] == {"status": 200, "response": "ok"}
    [posted] = stub.requests(path)
    assert posted.method == "POST"
    assert posted.json() == {
        "text": "shipped: version 1.4.2",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*shipped*\nrun `{name}`"}}
        ],
    }
    notify = next(j for j in kube.jobs(name) if j.metadata.labels["taskforge.io/step"] == "notify")
    assert secret_refs(notify) == {
        "TASKFORGE_SECRET_SLACK_WEBHOOK_URL": ("slack-webhook", "url"),
    }
    assert_never_leaked(kube, name, [webhook_url, token], running_operator)


@pytest.mark.local_agent
def test_slack_rejection_names_the_webhook_not_its_url(kube: Kube, stub: StubServer) -> None:
    token = uuid.uuid4().hex
    path = f"/services/T0E2E/B0E2E/{token}"
    stub.route(path, Reply(403, f"invalid_token {path}"))
    create_secret(kube, "slack-webhook", {"url": f"{stub.url}{path}"})
    kube.workflow(
        "slackbad",
        {"steps": [{"name": "notify", "retry": {"limit": 2},
                    "slack": {"webhookUrlFrom": {"name": "slack-webhook", "key": "url"},
                              "text": "hi"}}]},
    )
    name = kube.start_run("slackbad")
    run = kube.wait_run(name)
    step = step_of(run, "notify")
    assert run["status"]["phase"] == "Failed"
    assert step["attempts"] == 1  # 403 is permanent
    assert "the Slack webhook: HTTP 403" in step["message"], step["message"]
    assert token not in json.dumps(kube.run(name))
    kube.event_reasons(name, {"StepFailed"})
    assert token not in serialize(kube, kube.events(name))


# --- email -----------------------------------------------------------------------------------


@pytest.mark.local_agent
@AUTH_WITHOUT_TLS
def test_email_with_smtp_auth_from_a_secret(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    user, password = "robot@e2e.example", unique("smtp-pw")
    controller, smtp = smtp_server((user, password))
    try:
        create_secret(kube, "smtp", {"username": user, "password": password})
        kube.workflow(
            "mail",
            {
                "params": [{"name": "to", "default": "ops@e2e.example"}],
                "steps": [
                    {
                        "name": "usage",
                        "script": {"source": "echo '{\"percent\": 42}' > \"$TASKFORGE_RESULT\""},
                    },
                    {
                        "name": "send-report",
                        "dependsOn": ["usage"],
                        "email": {
                            "host": smtp.host,
                            "port": smtp.port,
                            "security": "none",
                            "usernameFrom": {"name": "smtp", "key": "username"},
                            "passwordFrom": {"name": "smtp", "key": "password"},
                            "from": "taskforge@e2e.example",
                            "to": ["{{ params.to }}", "audit@e2e.example"],
                            "subject": "Disk usage ({{ run.name }})",
                            "body": "Hello,\n\nthe disk is"
                            " {{ steps.usage.outputs.percent }}% full.\n",
                        },
                    },
                ],
            },
        )
        name = kube.start_run("mail", {"to": "dev@e2e.example"})
        run = kube.wait_run(name)
        assert run["status"]["phase"] == "Succeeded", run["status"]
        [message] = smtp.inbox.messages
        [(mail_from, rcpt_tos, authenticated)] = smtp.inbox.envelopes
        assert authenticated
        assert mail_from == "taskforge@e2e.example"
        assert rcpt_tos == ["dev@e2e.example", "audit@e2e.example"]
        assert message["Subject"] == f"Disk usage ({name})"
        assert message["To"] == "dev@e2e.example, audit@e2e.example"
        body = message.get_content().replace("\r\n", "\n")  # SMTP lines end in CRLF
        assert body == "Hello,\n\nthe disk is 42% full.\n"
        outputs = step_of(run, "send-report")["outputs"]
        assert outputs == {
            "messageId": message["Message-ID"],
            "to": ["dev@e2e.example", "audit@e2e.example"],
        }
        job = next(
            j for j in kube.jobs(name) if j.metadata.labels["taskforge.io/step"] == "send-report"
        )
        assert secret_refs(job) == {
            "TASKFORGE_SECRET_SMTP_USERNAME": ("smtp", "username"),
            "TASKFORGE_SECRET_SMTP_PASSWORD": ("smtp", "password"),
        }
        assert_never_leaked(kube, name, [password], running_operator)
    finally:
        controller.stop()


@pytest.mark.local_agent
@AUTH_WITHOUT_TLS
def test_email_wrong_password_is_a_permanent_failure(kube: Kube) -> None:
    controller, smtp = smtp_server(("robot@e2e.example", "right"))
    wrong = unique("wrong-pw")
    try:
        create_secret(kube, "smtp", {"username": "robot@e2e.example", "password": wrong})
        kube.workflow(
            "mailbad",
            {
                "steps": [
                    {
                        "name": "send",
                        "retry": {"limit": 2, "backoff": {"delay": "1s"}},
                        "email": {
                            "host": smtp.host, "port": smtp.port, "security": "none",
                            "usernameFrom": {"name": "smtp", "key": "username"},
                            "passwordFrom": {"name": "smtp", "key": "password"},
                            "from": "taskforge@e2e.example", "to": ["ops@e2e.example"],
                            "subject": "s", "body": "b",
                        },
                    }
                ]
            },
        )
        name = kube.start_run("mailbad")
        run = kube.wait_run(name)
        step = step_of(run, "send")
        assert run["status"]["phase"] == "Failed"
        assert step["attempts"] == 1, step  # 535 authentication failed: a 5xx is permanent
        assert "535" in step["message"], step["message"]
        assert smtp.inbox.messages == []
        assert wrong not in json.dumps(kube.run(name))
    finally:
        controller.stop()
