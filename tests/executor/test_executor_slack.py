"""The `slack` step against a local HTTP receiver standing in for hooks.slack.com."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.executor.conftest import HttpServer, RunExecutor

TOKEN_PATH = "/services/T0001/B0002/Xq9SecretWebhookToken"
REF = {"name": "slack", "key": "url"}


def webhook_env(server: HttpServer, suffix: str = "") -> dict[str, str]:
    return {"TASKFORGE_SECRET_SLACK_WEBHOOK_URL": f"{server.url}{TOKEN_PATH}{suffix}"}


def test_posts_text_and_blocks(run_executor: RunExecutor, http_server: HttpServer) -> None:
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*deploy* done"}}
    ]
    config = {"webhookUrlFrom": REF, "text": "deploy done", "blocks": blocks}
    result = run_executor("slack", config, env=webhook_env(http_server))

    assert result.code == 0
    assert result.message == {"ok": True, "outputs": {"status": 200, "response": "ok"}}
    (request,) = http_server.requests
    assert request.method == "POST"
    assert request.path == TOKEN_PATH
    assert json.loads(request.body) == {"text": "deploy done", "blocks": blocks}
    assert "Xq9SecretWebhookToken" not in result.everything()
    assert "the Slack webhook -> 200" in result.stdout


def test_text_only_sends_no_blocks(run_executor: RunExecutor, http_server: HttpServer) -> None:
    result = run_executor(
        "slack", {"webhookUrlFrom": REF, "text": "hi"}, env=webhook_env(http_server)
    )

    assert result.code == 0
    assert json.loads(http_server.requests[0].body) == {"text": "hi"}


@pytest.mark.parametrize(
    ("suffix", "exit_code", "retry_after"),
    [("/gone", 78, None), ("/limited", 75, 30), ("/broken", 75, None)],
)
def test_failures_are_classified_and_never_show_the_url(
    run_executor: RunExecutor,
    http_server: HttpServer,
    suffix: str,
    exit_code: int,
    retry_after: int | None,
) -> None:
    result = run_executor(
        "slack", {"webhookUrlFrom": REF, "text": "hi"}, env=webhook_env(http_server, suffix)
    )

    assert result.code == exit_code
    message = result.message
    assert message["retryable"] is (exit_code == 75)
    assert message.get("retryAfter") == retry_after
    assert message["error"].startswith("the Slack webhook: HTTP ")
    assert "Xq9SecretWebhookToken" not in result.everything()
    assert "/services/" not in result.everything()


def test_unreachable_webhook_is_retryable_and_redacted(
    run_executor: RunExecutor, closed_port: int
) -> None:
    env = {"TASKFORGE_SECRET_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{closed_port}{TOKEN_PATH}"}
    result = run_executor("slack", {"webhookUrlFrom": REF, "text": "hi"}, env=env)

    assert result.code == 75
    assert "Xq9SecretWebhookToken" not in result.everything()


def test_webhook_not_wired_is_permanent(run_executor: RunExecutor) -> None:
    result = run_executor("slack", {"webhookUrlFrom": REF, "text": "hi"})

    assert result.code == 78
    assert "webhookUrlFrom" in result.message["error"]
    assert "TASKFORGE_SECRET_SLACK_WEBHOOK_URL" in result.message["error"]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"text": "hi"}, "webhookUrlFrom: Field required"),
        ({"webhookUrlFrom": {"name": "s"}, "text": "hi"}, "webhookUrlFrom.key: Field required"),
        ({"webhookUrlFrom": REF}, "set text or blocks"),
    ],
)
def test_malformed_slack_config(
    run_executor: RunExecutor, http_server: HttpServer, config: dict[str, Any], field: str
) -> None:
    result = run_executor("slack", config, env=webhook_env(http_server))

    assert result.code == 78
    assert field in result.message["error"]
    assert http_server.requests == []
