"""The contract between the operator and the executor: env var names and secret wiring.

Both sides import this module, so a name can never drift between the pod spec the
operator builds and what the executor reads. It is deliberately dependency-free (stdlib
only, no pydantic, no `taskforge`): the operator imports it on every Job it builds and
the executor imports it before it knows which libraries the step needs.

Secrets never travel in `TASKFORGE_STEP` (which is visible in the Job spec); the operator
wires each one from `valueFrom.secretKeyRef` into the env var that `secret_env` names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Protocol

EXECUTOR_COMMAND: Final = "taskforge-executor"
"""The command of the executor image's container."""

EXECUTOR_STEP_TYPES: Final = ("http", "script", "log", "slack", "email")
"""Step types the executor runs; `container` steps run the user's image instead."""

# --- inputs -----------------------------------------------------------------------------
ENV_STEP: Final = "TASKFORGE_STEP"
"""JSON `{"name", "type", "config"}`; config is the camelCase wire form, templates rendered."""
ENV_RUN: Final = "TASKFORGE_RUN"
"""Name of the WorkflowRun (for log lines and scripts)."""
ENV_NAMESPACE: Final = "TASKFORGE_NAMESPACE"
"""Namespace of the run."""
ENV_ATTEMPT: Final = "TASKFORGE_ATTEMPT"
"""1-based attempt number of this step."""
ENV_WORKFLOW: Final = "TASKFORGE_WORKFLOW"
"""Name of the run's Workflow (set with TASKFORGE_LOG_FORMAT=json, for the log lines)."""
ENV_LOG_FORMAT: Final = "TASKFORGE_LOG_FORMAT"
"""`json`: the executor's own lines are JSON objects with the run's fields (as the operator's)."""

# --- secrets (wired by the operator from secretKeyRef) ----------------------------------
ENV_SECRET_HEADER_PREFIX: Final = "TASKFORGE_SECRET_HEADER_"
"""http: the value of `headers[i]` with `valueFrom` is in `TASKFORGE_SECRET_HEADER_<i>`."""
ENV_SECRET_SLACK_WEBHOOK_URL: Final = "TASKFORGE_SECRET_SLACK_WEBHOOK_URL"
"""slack: the incoming-webhook URL (`webhookUrlFrom`)."""
ENV_SECRET_SMTP_USERNAME: Final = "TASKFORGE_SECRET_SMTP_USERNAME"
"""email: the SMTP user name (`usernameFrom`)."""
ENV_SECRET_SMTP_PASSWORD: Final = "TASKFORGE_SECRET_SMTP_PASSWORD"
"""email: the SMTP password (`passwordFrom`)."""

# --- outputs ----------------------------------------------------------------------------
ENV_TERMINATION_MESSAGE_PATH: Final = "TASKFORGE_TERMINATION_MESSAGE_PATH"
"""Where to write the result JSON; unset means the kubelet's default below."""
DEFAULT_TERMINATION_MESSAGE_PATH: Final = "/dev/termination-log"
# The message's size limit and keys are in `taskforge.api.results` (shared with the engine).
ENV_RESULT: Final = "TASKFORGE_RESULT"
"""script: path of the file a script may write a JSON object of outputs to."""


def secret_header_env(index: int) -> str:
    """The env var holding the secret value of the http step's `headers[index]`."""
    return f"{ENV_SECRET_HEADER_PREFIX}{index}"


class _WireModel(Protocol):
    def to_k8s(self) -> dict[str, Any]: ...


def _wire(config: Mapping[str, Any] | _WireModel) -> Mapping[str, Any]:
    """Accept the wire dict or a `taskforge.api` model without importing pydantic here."""
    return config if isinstance(config, Mapping) else config.to_k8s()


def _ref(source: Any) -> tuple[str, str] | None:
    """(secret name, key) of a `{"name", "key"}` mapping, or None when absent."""
    if not isinstance(source, Mapping):
        return None
    name, key = source.get("name"), source.get("key")
    if isinstance(name, str) and isinstance(key, str):
        return name, key
    return None


def secret_env(
    step_type: str, config: Mapping[str, Any] | _WireModel
) -> list[tuple[str, str, str]]:
    """Env vars the step pod needs from Secrets: `(env_name, secret_name, secret_key)`.

    The operator turns each tuple into an `env` entry with `valueFrom.secretKeyRef`; the
    executor reads the same names. `config` is the step type's wire form (camelCase, as in
    `TASKFORGE_STEP`) or its `taskforge.api.step_types` model. Script env entries keep their own
    names, since the script reads them directly. Types without secrets give `[]`.
    """
    wire = _wire(config)
    wired: list[tuple[str, str, str]] = []

    def add(env_name: str, source: Any) -> None:
        ref = _ref(source)
        if ref is not None:
            wired.append((env_name, *ref))

    if step_type == "http":
        for index, header in enumerate(wire.get("headers") or []):
            if isinstance(header, Mapping):
                value_from = header.get("valueFrom")
                if isinstance(value_from, Mapping):
                    add(secret_header_env(index), value_from.get("secretKeyRef"))
    elif step_type == "slack":
        add(ENV_SECRET_SLACK_WEBHOOK_URL, wire.get("webhookUrlFrom"))
    elif step_type == "email":
        add(ENV_SECRET_SMTP_USERNAME, wire.get("usernameFrom"))
        add(ENV_SECRET_SMTP_PASSWORD, wire.get("passwordFrom"))
    elif step_type == "script":
        for entry in wire.get("env") or []:
            if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
                value_from = entry.get("valueFrom")
                if isinstance(value_from, Mapping):
                    add(entry["name"], value_from.get("secretKeyRef"))
    return wired


def encode_step(name: str, step_type: str, config: Mapping[str, Any] | _WireModel) -> str:
    """The `TASKFORGE_STEP` value for a step, so the envelope is defined in one place."""
    return json.dumps(
        {"name": name, "type": step_type, "config": dict(_wire(config))},
        separators=(",", ":"),
        ensure_ascii=False,
    )
