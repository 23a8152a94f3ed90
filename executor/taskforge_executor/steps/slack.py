"""The `slack` step: post a message to an incoming webhook.

The webhook URL is the credential (anyone holding it can post), so it is read from the
Secret-wired env var, registered with the redactor, and never used in a message: errors
say "the Slack webhook", not the URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from taskforge.api.step_types import SlackStep

from taskforge_executor.contract import ENV_SECRET_SLACK_WEBHOOK_URL
from taskforge_executor.httpcall import check_status, send
from taskforge_executor.steps import StepContext
from taskforge_executor.validate import invalid, validate

TARGET = "the Slack webhook"
TIMEOUT_SECONDS = 30.0
_MIN_SECRET_PATH = 8


def run(config: Any, ctx: StepContext) -> dict[str, Any]:
    step = validate(SlackStep, config, "slack")
    if step.text is None and step.blocks is None:
        raise invalid("slack", "text: set text or blocks (or both)")
    url = ctx.env.get(ENV_SECRET_SLACK_WEBHOOK_URL)
    if not url:
        raise invalid(
            "slack",
            f"webhookUrlFrom: the secret is not wired into the pod"
            f" ({ENV_SECRET_SLACK_WEBHOOK_URL} is not set)",
        )
    ctx.console.redactor.add(url)
    path = urlsplit(url).path
    if len(path) >= _MIN_SECRET_PATH:  # the token lives in the path; errors may quote it alone
        ctx.console.redactor.add(path)
    payload: dict[str, Any] = {}
    if step.text is not None:
        payload["text"] = step.text
    if step.blocks is not None:
        payload["blocks"] = step.blocks
    reply = send(target=TARGET, method="POST", url=url, timeout=TIMEOUT_SECONDS, json_body=payload)
    ctx.console.info(f"{TARGET} -> {reply.status} {reply.reason} in {reply.elapsed_ms} ms")
    outputs = {"status": reply.status, "response": reply.body}
    check_status(reply, TARGET, None, outputs)
    return outputs
