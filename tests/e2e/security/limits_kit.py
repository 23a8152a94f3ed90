"""Helpers of the limit attacks: webhook workflows, signed deliveries, conditions, health."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, cast

import httpx
from kubernetes import client
from taskforge.engine.webhook import sign

from tests.e2e.operator.conftest import GROUP, VERSION, Kube, OperatorProcess

KEY = b"limits-e2e-hmac-key-0123456789"
NO_JOB_STEP = {"name": "s", "when": "false", "log": {"message": "never runs"}}
"""A step that is skipped: the run starts and finishes without a Job, so bursts of runs cost
the machine nothing and the tests measure admission only."""


def webhook_workflow(kube: Kube, name: str, spec: dict[str, Any]) -> None:
    kube.core.create_namespaced_secret(kube.namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=f"{name}-key"), string_data={"key": KEY.decode()}))
    kube.workflow(name, {**spec, "triggers": {"webhook": {
        "secretRef": {"name": f"{name}-key", "key": "key"}}}})


def deliver(op: OperatorProcess, namespace: str, workflow: str, delivery: str,
            body: dict[str, Any] | None = None) -> httpx.Response:
    raw = json.dumps(body or {"delivery": delivery}).encode()
    return httpx.post(f"http://127.0.0.1:{op.http_port}/hooks/{namespace}/{workflow}",
                      content=raw, timeout=30, headers=signed(raw, delivery))


def signed(raw: bytes, delivery: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Taskforge-Signature": sign(KEY, raw),
            "X-Taskforge-Delivery": delivery}


def reason(run: dict[str, Any]) -> str | None:
    conditions = (run.get("status") or {}).get("conditions") or []
    return next((c.get("reason") for c in conditions if c["type"] == "Succeeded"), None)


def started(run: dict[str, Any]) -> bool:
    return bool((run.get("status") or {}).get("startedAt"))


def run_names(kube: Kube) -> list[str]:
    listed = cast(dict[str, Any], kube.custom.list_namespaced_custom_object(
        GROUP, VERSION, kube.namespace, "workflowruns"))
    return [r["metadata"]["name"] for r in listed["items"]]


def workflow_condition(kube: Kube, name: str, type_: str) -> dict[str, Any]:
    conditions = (kube.get_workflow(name).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.2)


def assert_healthy(op: OperatorProcess) -> None:
    """The operator survived the attack: still running, and /healthz answers at once."""
    assert op.proc is not None and op.proc.poll() is None, "the operator exited"
    answer = httpx.get(f"http://127.0.0.1:{op.http_port}/healthz", timeout=2)
    assert answer.status_code == 200, answer.text


def metric(op: OperatorProcess, name: str, labels: dict[str, str]) -> float:
    """One sample from the operator's /metrics (0 when the series does not exist yet)."""
    text = httpx.get(f"http://127.0.0.1:{op.http_port}/metrics", timeout=5).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(rf"{re.escape(name)}\{{(.*)\}} (\S+)", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return 0.0
