"""The operator-facing contract: env names and the secret wiring the operator builds from."""

from __future__ import annotations

import json
import subprocess
import sys

from taskforge.api.steps import EmailStep, HttpStep, ScriptStep
from taskforge_executor import contract
from taskforge_executor.contract import encode_step, secret_env, secret_header_env


def test_names_are_the_documented_ones() -> None:
    assert contract.ENV_STEP == "TASKFORGE_STEP"
    assert contract.ENV_RUN == "TASKFORGE_RUN"
    assert contract.ENV_NAMESPACE == "TASKFORGE_NAMESPACE"
    assert contract.ENV_ATTEMPT == "TASKFORGE_ATTEMPT"
    assert contract.ENV_TERMINATION_MESSAGE_PATH == "TASKFORGE_TERMINATION_MESSAGE_PATH"
    assert contract.DEFAULT_TERMINATION_MESSAGE_PATH == "/dev/termination-log"
    assert contract.ENV_RESULT == "TASKFORGE_RESULT"
    assert secret_header_env(3) == "TASKFORGE_SECRET_HEADER_3"
    assert contract.ENV_SECRET_SLACK_WEBHOOK_URL == "TASKFORGE_SECRET_SLACK_WEBHOOK_URL"
    assert contract.ENV_SECRET_SMTP_USERNAME == "TASKFORGE_SECRET_SMTP_USERNAME"
    assert contract.ENV_SECRET_SMTP_PASSWORD == "TASKFORGE_SECRET_SMTP_PASSWORD"


def test_http_headers_use_their_index() -> None:
    config = {
        "url": "https://api.example.com",
        "headers": [
            {"name": "Accept", "value": "application/json"},
            {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "gh", "key": "tok"}}},
            {"name": "X-Key", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}},
        ],
    }
    assert secret_env("http", config) == [
        ("TASKFORGE_SECRET_HEADER_1", "gh", "tok"),
        ("TASKFORGE_SECRET_HEADER_2", "other", "k"),
    ]
    # The pydantic model gives the same answer as its wire form.
    assert secret_env("http", HttpStep.model_validate(config)) == secret_env("http", config)


def test_slack_email_script_and_the_rest() -> None:
    ref = {"name": "s", "key": "k"}
    assert secret_env("slack", {"webhookUrlFrom": ref, "text": "x"}) == [
        ("TASKFORGE_SECRET_SLACK_WEBHOOK_URL", "s", "k")
    ]
    email = {
        "host": "smtp",
        "from": "a@b.c",
        "to": ["d@e.f"],
        "subject": "s",
        "body": "b",
        "usernameFrom": {"name": "smtp", "key": "user"},
        "passwordFrom": {"name": "smtp", "key": "pass"},
    }
    expected = [
        ("TASKFORGE_SECRET_SMTP_USERNAME", "smtp", "user"),
        ("TASKFORGE_SECRET_SMTP_PASSWORD", "smtp", "pass"),
    ]
    assert secret_env("email", email) == expected
    assert secret_env("email", EmailStep.model_validate(email)) == expected
    script = {
        "source": "echo",
        "env": [
            {"name": "PLAIN", "value": "1"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "v"}}},
            {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "v"}}},
        ],
    }
    assert secret_env("script", script) == [("TOKEN", "t", "v")]
    assert secret_env("script", ScriptStep.model_validate(script)) == [("TOKEN", "t", "v")]
    assert secret_env("log", {"message": "hi"}) == []
    assert secret_env("container", {"image": "busybox"}) == []
    assert secret_env("http", {"url": "x", "headers": None}) == []


def test_encode_step_is_what_the_executor_reads() -> None:
    raw = encode_step("fetch", "http", HttpStep.model_validate({"url": "https://x", "json": {}}))
    assert json.loads(raw) == {
        "name": "fetch",
        "type": "http",
        "config": {
            "method": "GET",
            "url": "https://x",
            "json": {},
            "timeout": "30s",
            "verifyTls": True,
        },
    }


def test_contract_imports_nothing_heavy() -> None:
    probe = (
        "import sys, taskforge_executor.contract\n"
        "heavy = [m for m in ('pydantic', 'httpx', 'taskforge') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
