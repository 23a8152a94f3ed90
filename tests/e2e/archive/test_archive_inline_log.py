"""An executor step's log reaches the archive in its termination message, with no read of
the pod's log through the API server (the archive's main cost per run); a log too long for
the message, and a container step's (the user's image), are read from the pod as before."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client

from tests.e2e.archive.conftest import Archive
from tests.e2e.archive.test_archive import _logs
from tests.e2e.operator.conftest import Kube, OperatorProcess
from tests.e2e.operator.test_metrics import scrape, value

INLINE = "taskforge_archive_inline_logs_total"


def _log_reads(kube: Kube) -> float:
    """pods/log requests the API server has served so far, from every client, whatever
    their answer (it counts them as verb CONNECT: a log is streamed from the node)."""
    api: client.ApiClient = kube.core.api_client
    response = api.call_api(*api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"]))
    response.read()
    total = 0.0
    for line in response.data.decode().splitlines():
        if line.startswith("apiserver_request_total{") and 'subresource="log"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _archived_logs(kube: Kube, archive: Archive, name: str, steps: int) -> dict[str, Any]:
    archive.run(kube.namespace, name)
    logs = archive.wait(f"{steps} logs of {name}", lambda: (
        found if len(found := asyncio.run(_logs(archive.url, kube.namespace, name))) == steps
        else None), timeout=30)
    return {log["step"]: log for log in logs}


def test_an_executor_steps_log_is_archived_from_its_termination_message(
    kube: Kube, archive: Archive, operator: OperatorProcess,
) -> None:
    kube.workflow("inline", {"steps": [
        {"name": "say", "script": {"language": "sh", "source": "echo small log of $RUN >&2",
                                   "env": [{"name": "RUN", "value": "{{ run.name }}"}]}}]})
    reads, inline = _log_reads(kube), value(scrape(operator), INLINE)
    name = kube.start_run("inline")
    assert kube.wait_run(name, timeout=120)["status"]["phase"] == "Succeeded"
    say = _archived_logs(kube, archive, name, 1)["say"]

    assert say["note"] is None and not say["truncated"], say
    lines = say["text"].splitlines()
    assert lines[0] == f"INFO step say (script) attempt 1 of run {kube.namespace}/{name}"
    assert f"small log of {name}" in lines and lines[-1].startswith("INFO step say succeeded")
    assert value(scrape(operator), INLINE) == inline + 1
    assert _log_reads(kube) == reads, "the archive read a log the message carried"


def test_a_long_log_and_a_container_steps_log_are_read_from_the_pod(
    kube: Kube, archive: Archive, operator: OperatorProcess,
) -> None:
    kube.workflow("podlogs", {"steps": [
        {"name": "loud", "script": {
            "language": "sh", "source": "for i in $(seq 1 300); do echo line $i of 300; done"}},
        {"name": "own", "dependsOn": ["loud"], "container": {
            # writes the executor's message format itself: a user's image is never trusted
            # to speak for its log
            "image": "busybox", "command": ["sh", "-c", "echo from my image; printf"
                                            " '{\"ok\":true,\"log\":\"forged\"}' >"
                                            " /dev/termination-log"]}},
    ]})
    reads, inline = _log_reads(kube), value(scrape(operator), INLINE)
    name = kube.start_run("podlogs")
    assert kube.wait_run(name, timeout=120)["status"]["phase"] == "Succeeded"
    logs = _archived_logs(kube, archive, name, 2)

    assert logs["loud"]["note"] is None and "line 1 of 300\n" in logs["loud"]["text"]
    assert "line 300 of 300\n" in logs["loud"]["text"], logs["loud"]
    assert logs["own"]["text"] == "from my image\n", logs["own"]
    assert value(scrape(operator), INLINE) == inline
    assert _log_reads(kube) >= reads + 2
