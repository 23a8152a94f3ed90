"""Triggers through the real operator: cron schedules on time and exactly once, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime
from typing import Any

import httpx
from kubernetes import client

from tests.e2e.operator.conftest import Kube, OperatorProcess


def _scheduled_runs(kube: Kube, workflow: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.custom.list_namespaced_custom_object(
        "taskforge.io", "v1alpha1", kube.namespace, "workflowruns",
        label_selector="taskforge.io/trigger=schedule",
    )["items"]
    return [r for r in items if r["spec"]["workflowRef"]["name"] == workflow]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _sleep_until_second(second: float) -> None:
    """Sleep until the wall clock's seconds-in-minute reach `second` (next minute if past)."""
    now = time.time()
    target = now - now % 60 + second
    if target <= now:
        target += 60
    time.sleep(target - now)


def test_every_minute_schedule_is_on_time_and_survives_a_restart(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    _sleep_until_second(40)  # create the Workflow well before a minute boundary
    kube.workflow("tick", {
        "steps": [{"name": "t", "log": {"message": "tick {{ trigger.scheduledTime }}"}}],
        "triggers": {"schedule": {"cron": "* * * * *"}},
    })
    # First boundary: the run appears within a second of its time.
    _sleep_until_second(3)
    runs = _scheduled_runs(kube, "tick")
    assert len(runs) == 1, [r["metadata"]["name"] for r in runs]
    run = runs[0]
    scheduled = _at(run["spec"]["trigger"]["scheduledTime"])
    created = _at(run["metadata"]["creationTimestamp"])
    assert scheduled.second == 0
    assert (created - scheduled).total_seconds() <= 1.0, (scheduled, created)
    status = kube.get_workflow("tick")["status"]
    assert _at(status["lastScheduleTime"]) == scheduled
    assert _at(status["nextScheduleTime"]) > scheduled

    # Second boundary: kill -9 just before it, restart just after; exactly one run for it.
    _sleep_until_second(59)
    running_operator.kill()
    time.sleep(2)
    running_operator.start()
    _sleep_until_second(15)
    runs = _scheduled_runs(kube, "tick")
    times = sorted(_at(r["spec"]["trigger"]["scheduledTime"]) for r in runs)
    assert len(runs) == 2, [r["metadata"]["name"] for r in runs]
    assert (times[1] - times[0]).total_seconds() == 60
    for run in runs:
        kube.wait_run(run["metadata"]["name"])
    kube.custom.patch_namespaced_custom_object(
        "taskforge.io", "v1alpha1", kube.namespace, "workflows", "tick",
        {"spec": {"triggers": {"schedule": {"suspend": True}}}},
    )


def test_webhook_through_the_operator(kube: Kube, running_operator: OperatorProcess) -> None:
    key = b"s3cret-key"
    kube.core.create_namespaced_secret(kube.namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="hook-key"), string_data={"key": key.decode()}))
    kube.workflow("hooked", {
        "params": [{"name": "ref", "default": "main"}],
        "steps": [{"name": "echo", "log": {"message": "ref={{ params.ref }} "
                                                      "by={{ trigger.body.pusher }}"}}],
        "triggers": {"webhook": {"secretRef": {"name": "hook-key", "key": "key"},
                                 "paramsFromBody": {"ref": "ref"}}},
    })
    time.sleep(1)  # the operator's cache must have the Workflow
    body = json.dumps({"ref": "release", "pusher": "ada"}).encode()
    signature = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    url = f"http://127.0.0.1:{running_operator.http_port}/hooks/{kube.namespace}/hooked"
    headers = {"Content-Type": "application/json", "X-Taskforge-Signature": signature,
               "X-Taskforge-Delivery": "d-1"}
    first = httpx.post(url, content=body, headers=headers, timeout=10)
    assert first.status_code == 202, first.text
    again = httpx.post(url, content=body, headers=headers, timeout=10)
    assert again.status_code == 202 and again.json()["run"] == first.json()["run"]
    assert again.json()["duplicate"] is True
    forged = httpx.post(url, content=body, timeout=10, headers={
        **headers, "X-Taskforge-Signature": "sha256=" + "0" * 64, "X-Taskforge-Delivery": "d-2"})
    assert forged.status_code == 401
    run = kube.wait_run(first.json()["run"])
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["steps"]["echo"]["outputs"]["message"] == "ref=release by=ada"


def test_webhook_deliveries_over_the_rate_limit_get_429(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    kube.core.create_namespaced_secret(kube.namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="bearer"), string_data={"token": "t0ken"}))
    kube.workflow("throttled", {
        "rateLimit": {"limit": 1, "per": "1m"},
        "steps": [{"name": "s", "log": {"message": "x"}}],
        "triggers": {"webhook": {"auth": "bearer",
                                 "secretRef": {"name": "bearer", "key": "token"}}},
    })
    time.sleep(1)
    url = f"http://127.0.0.1:{running_operator.http_port}/hooks/{kube.namespace}/throttled"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer t0ken"}
    first = httpx.post(url, content=b"{}", headers=headers, timeout=10)
    assert first.status_code == 202, first.text
    second = httpx.post(url, content=b"{}", headers=headers, timeout=10)
    assert second.status_code == 429, second.text
    assert 0 < float(second.headers["Retry-After"]) <= 60
    run = kube.wait_run(first.json()["run"])
    assert run["status"]["phase"] == "Succeeded"
